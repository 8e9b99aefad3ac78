"""Serving one model version: its lifecycle, the dynamic batcher, the model worker process, metrics."""
