"""Benchmark of the gateway (LiteLLM + switcher) against the switcher alone and the engine directly."""
