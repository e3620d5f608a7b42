"""Benchmark of the switcher against a direct connection, a minimal proxy and a naive switcher."""
