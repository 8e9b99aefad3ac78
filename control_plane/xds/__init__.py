"""xDS: snapshots, the cache that serves them, and the gRPC ADS server."""
