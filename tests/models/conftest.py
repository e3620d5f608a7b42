"""Fixtures for the model-weights tests: a Hugging Face Hub stand-in and an in-process module runner."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import _internal as _module_utils_internal
from ansible.module_utils.common import warnings as _warnings
from ansible.module_utils.testing import patch_module_args
from models.weights_data import GATED_ID, REPO_ID, SHARD, TOKEN_GRANTED, TOKEN_OTHER

from standins.hf_hub import HubStandIn


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubStandIn]:
    stand_in = HubStandIn(tmp_path / "hub", tokens={TOKEN_OTHER})
    stand_in.add_commit(
        REPO_ID,
        {
            "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 128}).encode(),
            "generation_config.json": b'{"do_sample": false}',
            "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}',
            "tokenizer_config.json": b'{"model_max_length": 256}',
            "model-00001-of-00002.safetensors": SHARD,
            "model-00002-of-00002.safetensors": SHARD // 2,
            "model.safetensors.index.json": b'{"weight_map": {}}',
            "README.md": b"# tiny\n",
            "original/consolidated.pth": 1 << 16,
        },
    )
    stand_in.add_commit(GATED_ID, {"config.json": b"{}", "model.safetensors": 1 << 16}, gated="manual")
    stand_in.grant(GATED_ID, TOKEN_GRANTED)
    # Keep the environment clean: a token or endpoint from the developer's shell must not leak in.
    saved = {k: os.environ.pop(k) for k in ("HF_TOKEN", "HF_ENDPOINT") if k in os.environ}
    with stand_in:
        yield stand_in
    os.environ.update(saved)


@pytest.fixture
def sha(hub: HubStandIn) -> str:
    return hub.repos[REPO_ID].refs["main"]


@pytest.fixture
def run_weights(
    capsys: pytest.CaptureFixture[str], hub: HubStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., dict[str, Any]]:
    """Run model_weights' main() in-process, as Ansible would, against the stand-in."""
    from ansible_collections.k3sllm.platform.plugins.modules import model_weights

    def _run(**args: Any) -> dict[str, Any]:
        params = {
            "name": "tiny",
            "repo": REPO_ID,
            "revision": hub.repos[REPO_ID].refs["main"],
            "weights_dir": str(tmp_path / "weights"),
            "endpoint": hub.url,
            **args,
        }
        # Module warnings live in a process-wide list in ansible-core: start each run clean. Once other tests
        # have imported controller code, ansible-core would send them to the controller's display instead;
        # a module runs on a managed host, where they are returned with the result.
        _warnings._global_warnings.clear()
        monkeypatch.setattr(_module_utils_internal, "is_controller", False)
        with patch_module_args(params), pytest.raises(SystemExit):
            model_weights.main()
        result = json.loads(capsys.readouterr().out)
        # ansible-core 2.19 returns warnings as structured events; tests compare their text.
        result["warnings"] = [
            w["event"]["msg"] if isinstance(w, dict) and "event" in w else str(w)
            for w in result.get("warnings", [])
        ]
        return result

    return _run
