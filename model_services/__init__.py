"""Switchyard model services: one model version per process behind Envoy."""

__version__ = "0.1.0"
