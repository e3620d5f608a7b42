"""Test stand-ins: small servers that speak the real protocol of things that cannot run here
(vLLM sleep mode on a GPU, the Hugging Face Hub, the Kubernetes API, NVIDIA's apt repository).

Product code never imports from here; tests point product code at these over 127.0.0.1.
"""
