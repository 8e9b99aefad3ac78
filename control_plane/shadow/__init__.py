"""Shadow comparison: pair production and mirrored answers by request id and report on them."""
