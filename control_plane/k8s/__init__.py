"""Switchyard on Kubernetes: ModelRoute and Gateway as custom resources."""
