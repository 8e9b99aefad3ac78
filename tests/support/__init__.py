"""Helpers shared by the integration tests and the benchmarks: real processes on loopback."""
