"""Connection options shared by the modules that call LiteLLM's admin API."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the LiteLLM proxy, for example C(https://llm.example.com) (k3sllm's gateway) or
        C(http://127.0.0.1:4000).
    type: str
    required: true
  master_key:
    description:
      - LiteLLM's master key (C(sk-...)), sent as a bearer token. Never logged.
      - k3sllm keeps it in the Secret C(litellm-master-key) and in C(artifacts/secrets/litellm-master-key).
    type: str
    required: true
  validate_certs:
    description: Verify the proxy's TLS certificate. Turn off only for a throwaway test proxy.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the proxy's certificate, when the system does not trust it
        (k3sllm's self-signed CA is fetched to C(artifacts/ca.crt)).
    type: path
  timeout:
    description: Seconds to wait for each answer of the proxy.
    type: int
    default: 30
notes:
  - Runs where the task runs; delegate to C(localhost) to call the proxy from the controller.
  - Written against LiteLLM 1.108 (the version k3sllm pins); it needs LiteLLM's database
    (C(DATABASE_URL)), without which the admin routes do not exist.
"""
