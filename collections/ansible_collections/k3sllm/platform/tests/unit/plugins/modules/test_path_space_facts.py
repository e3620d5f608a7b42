"""path_space_facts: free space of the file system that will hold a path."""

from __future__ import annotations

import os

from ansible_collections.k3sllm.platform.plugins.module_utils.diskspace import nearest_existing
from ansible_collections.k3sllm.platform.plugins.modules import path_space_facts


def test_missing_path_is_measured_on_its_existing_ancestor(tmp_path, run_module):
    target = tmp_path / "not" / "yet" / "created"
    result = run_module(path_space_facts.main, {"path": str(target)})
    stats = os.statvfs(tmp_path)
    assert result["existing_path"] == str(tmp_path)
    assert result["size_total_bytes"] == stats.f_frsize * stats.f_blocks
    assert 0 < result["size_available_bytes"] <= result["size_total_bytes"]
    assert not target.exists()
    assert result["changed"] is False


def test_existing_path_is_itself(tmp_path):
    assert nearest_existing(str(tmp_path)) == str(tmp_path)
    assert nearest_existing(str(tmp_path / "a" / "..")) == str(tmp_path)
