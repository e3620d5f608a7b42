"""k3sllm switcher: an OpenAI-compatible proxy that wakes the requested model on demand.

It sits in front of one vLLM engine per model (all started with ``--enable-sleep-mode``) and owns
which of them hold the GPU. See README.md beside this file for the config schema and model states.
"""

__version__ = "0.1.0"
