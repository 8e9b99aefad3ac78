"""Small programs that use a model service (see docker-compose.yml's `sidecar` profile)."""
