"""Names shared by the model-weights tests (imported as models.weights_data)."""

from __future__ import annotations

REPO_ID = "standin/tiny-llm"
GATED_ID = "standin/gated-llm"
TOKEN_GRANTED = "hf_granted_token"
TOKEN_OTHER = "hf_known_but_not_granted"
# Shards above huggingface_hub's 10 MiB read chunk, so a cut mid-file leaves whole chunks to resume from.
SHARD = 12 << 20
