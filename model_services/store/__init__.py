"""The model store: version directories with their manifest, packaging, the example dataset and training."""
