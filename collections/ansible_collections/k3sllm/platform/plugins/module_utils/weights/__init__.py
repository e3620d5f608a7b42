"""Model weights: list, verify and fetch a pinned snapshot into ``<weights_dir>/<name>/<revision>``.

Shared by the ``model_weights`` and ``model_weights_info`` modules, the tests and the benchmark. No Ansible
imports here, so it runs (and is tested) as plain Python.

Why not plain ``huggingface_hub.snapshot_download``: it accepts a file whose bytes differ from the Hub's
LFS sha256 as long as the size is right, and (2.x) deletes partial files when a download fails, so an
interrupted 5 GB shard starts again from zero. We keep using ``huggingface_hub`` for everything that
speaks the Hub protocol (model info, tree listing, HEAD metadata and redirects, auth headers, ranged GET with
its own retries, error classes) and add, around it: a partial file per blob that survives the process (resume
across runs), a sha256 (LFS) or git blob sha1 (small files) computed while the bytes arrive, bounded re-fetch
of corrupt files, a free-space check before fetching, a progress file, and a manifest that makes re-runs
cheap and offline sources verifiable.

The package, by step: ``files`` (what a snapshot's files are, where they go, how their bytes are checked),
``progress`` (the progress file the role polls), ``manifest`` (what was verified), ``hub`` and ``offline``
(where the bytes come from), ``fetch`` (resumable, verified transfers) and ``ensure`` (the whole operation,
and a model's size for the capacity plan). The names below are the package's public interface.
"""

from __future__ import annotations

from ansible_collections.k3sllm.platform.plugins.module_utils.weights.ensure import (
    describe_model,
    ensure_weights,
    open_source,
)
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.fetch import (
    FetchStats,
    fetch_all,
    fetch_file,
    partial_bytes,
    partial_path,
)
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.files import (
    MANIFEST,
    STATE_DIR,
    HashingWriter,
    Snapshot,
    Source,
    TransientError,
    WeightFile,
    WeightsError,
    hash_file,
    is_commit,
    safe_relpath,
    select_files,
    target_dir,
)
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.hub import HubSource
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.manifest import (
    LocalState,
    check_local,
    load_manifest,
    save_manifest,
)
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.offline import FolderSource, TarSource
from ansible_collections.k3sllm.platform.plugins.module_utils.weights.progress import Progress

__all__ = [
    "MANIFEST",
    "STATE_DIR",
    "FetchStats",
    "FolderSource",
    "HashingWriter",
    "HubSource",
    "LocalState",
    "Progress",
    "Snapshot",
    "Source",
    "TarSource",
    "TransientError",
    "WeightFile",
    "WeightsError",
    "check_local",
    "describe_model",
    "ensure_weights",
    "fetch_all",
    "fetch_file",
    "hash_file",
    "is_commit",
    "load_manifest",
    "open_source",
    "partial_bytes",
    "partial_path",
    "safe_relpath",
    "save_manifest",
    "select_files",
    "target_dir",
]
