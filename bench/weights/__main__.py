"""Benchmark: model_weights download throughput against a plain parallel HTTP copy, same files, same run.

    python -m bench.weights [--quick] [--json]

The Hugging Face Hub stand-in (tests/standins/hf_hub.py) runs in its own process on 127.0.0.1 and
serves a generated checkpoint (LFS shards behind a CDN-style redirect, plus small JSON files). Then,
interleaved over several rounds, into fresh folders:

- baseline: the tree listing, then every file fetched by N threads with urllib (redirects followed,
  1 MiB copies), no checks: the cheapest correct way to copy the files over HTTP;
- module: ``ensure_weights`` with the Hub source, the code path of k3sllm.platform.model_weights
  (huggingface_hub listing, HEAD per file, ranged GET, sha256 / git blob id computed as bytes arrive,
  manifest, progress file), N workers;
- module without hashing: the same with the hash replaced by a no-op, to isolate the inline
  verification cost;
- full re-verify: a re-run with verify=full on the finished folder (hash every byte from the page cache).

Prints medians and the ratios: module / baseline throughput (target >= 0.8) and verification overhead.
Ansible's own start-up (about a second per task here) is not download throughput and is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "collections"), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from ansible_collections.k3sllm.platform.plugins.module_utils import weights as w  # noqa: E402

REPO = "bench/llm"
MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_hub(
    workdir: Path, shards: int, shard_mib: int, link_mbps: float = 0
) -> tuple[subprocess.Popen[str], str, str]:
    spec = {
        REPO: {
            "config.json": json.dumps({"architectures": ["LlamaForCausalLM"]}),
            "tokenizer.json": json.dumps(
                {"model": {"type": "BPE", "vocab": {str(i): i for i in range(2000)}}}
            ),
            "tokenizer_config.json": "{}",
            "model.safetensors.index.json": "{}",
            **{f"model-{i + 1:05d}-of-{shards:05d}.safetensors": shard_mib * MIB for i in range(shards)},
        }
    }
    (workdir / "spec.json").write_text(json.dumps(spec))
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "standins" / "hf_hub.py"),
            "--port",
            str(port),
            "--root",
            str(workdir / "hub"),
            "--repo-spec",
            str(workdir / "spec.json"),
            "--link-mbps",
            str(link_mbps),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    sha = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(REPO):
            sha = line.split()[1]
        if line.startswith("listening"):
            break
    if not sha:
        proc.kill()
        raise RuntimeError("hub stand-in did not start")
    return proc, f"http://127.0.0.1:{port}", sha


def baseline_copy(endpoint: str, sha: str, dest: Path, workers: int) -> int:
    """List the tree, then GET every file in parallel, following redirects. No verification."""
    with urllib.request.urlopen(f"{endpoint}/api/models/{REPO}/tree/{sha}?recursive=true") as resp:
        files = [e["path"] for e in json.load(resp) if e["type"] == "file"]

    def get(path: str) -> int:
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with (
            urllib.request.urlopen(f"{endpoint}/{REPO}/resolve/{sha}/{path}") as resp,
            open(target, "wb") as out,
        ):
            shutil.copyfileobj(resp, out, MIB)
            return out.tell()

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(get, files))


class NullHasher:
    def update(self, data: bytes) -> None:
        return None

    def hexdigest(self) -> str:
        return ""


def module_download(
    endpoint: str, sha: str, dest: Path, workers: int, verify: str = "quick"
) -> dict[str, Any]:
    source = w.open_source(REPO, sha, endpoint=endpoint)
    return w.ensure_weights(
        name="llm",
        repo=REPO,
        revision=sha,
        weights_dir=dest,
        source=source,
        verify=verify,
        workers=workers,
        disk_reserve_bytes=0,
        progress_file=dest / "progress.json",
    )


def module_download_unhashed(endpoint: str, sha: str, dest: Path, workers: int) -> dict[str, Any]:
    """The module path with hashing disabled (expected digests cleared, hasher a no-op)."""
    original_snapshot = w.HubSource.snapshot
    original_hasher = w.WeightFile.hasher

    def snapshot(self: w.HubSource) -> w.Snapshot:
        snap = original_snapshot(self)
        snap.files = [w.WeightFile(f.path, f.size) for f in snap.files]
        return snap

    w.HubSource.snapshot = snapshot  # type: ignore[method-assign]
    w.WeightFile.hasher = lambda self: NullHasher()  # type: ignore[method-assign]
    try:
        return module_download(endpoint, sha, dest, workers)
    finally:
        w.HubSource.snapshot = original_snapshot  # type: ignore[method-assign]
        w.WeightFile.hasher = original_hasher  # type: ignore[method-assign]


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - began, out


def measure(workdir: Path, shards: int, shard_mib: int, rounds: int, workers: int, link_mbps: float) -> dict:
    proc, endpoint, sha = start_hub(workdir, shards, shard_mib, link_mbps)
    runs: dict[str, list[float]] = {"baseline": [], "module": [], "module_nohash": [], "reverify": []}
    total = module_bytes = 0
    try:
        for i in range(rounds):
            # Interleaved so that drift (page cache, CPU frequency) hits every variant alike.
            dest = workdir / f"base-{i}"
            seconds, total = timed(baseline_copy, endpoint, sha, dest, workers)
            runs["baseline"].append(seconds)
            shutil.rmtree(dest)

            dest = workdir / f"mod-{i}"
            seconds, result = timed(module_download, endpoint, sha, dest, workers)
            assert result["changed"] and result["bytes_fetched"] == result["bytes"], result
            module_bytes = result["bytes"]
            runs["module"].append(seconds)
            seconds, again = timed(module_download, endpoint, sha, dest, workers, "full")
            assert not again["changed"] and again["verified_bytes"] == module_bytes, again
            runs["reverify"].append(seconds)
            shutil.rmtree(dest)

            dest = workdir / f"raw-{i}"
            seconds, _ = timed(module_download_unhashed, endpoint, sha, dest, workers)
            runs["module_nohash"].append(seconds)
            shutil.rmtree(dest)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir / "hub", ignore_errors=True)
    assert total == module_bytes, (total, module_bytes)
    med = {k: statistics.median(v) for k, v in runs.items()}
    mib = total / MIB
    return {
        "link_mbps": link_mbps or None,
        "bytes": total,
        "baseline_mib_s": round(mib / med["baseline"], 1),
        "module_mib_s": round(mib / med["module"], 1),
        "module_nohash_mib_s": round(mib / med["module_nohash"], 1),
        "reverify_mib_s": round(mib / med["reverify"], 1),
        "ratio_module_vs_baseline": round(med["baseline"] / med["module"], 3),
        "ratio_transfer_only_vs_baseline": round(med["baseline"] / med["module_nohash"], 3),
        "inline_verify_overhead": round(med["module"] / med["module_nohash"] - 1, 3),
        "separate_verify_pass_vs_download": round(med["reverify"] / med["module"], 3),
    }


def show(r: dict, workers: int) -> None:
    link = f"link limited to {r['link_mbps']:.0f} Mbit/s" if r["link_mbps"] else "loopback, unthrottled"
    print(f"-- {link}")
    print(f"  plain parallel HTTP copy (urllib, {workers} threads): {r['baseline_mib_s']:8.1f} MiB/s")
    print(f"  model_weights (sha256 as bytes arrive):      {r['module_mib_s']:8.1f} MiB/s")
    print(f"  model_weights with hashing disabled:         {r['module_nohash_mib_s']:8.1f} MiB/s")
    print(f"  verify=full re-run (hash from page cache):   {r['reverify_mib_s']:8.1f} MiB/s")
    target = "ok" if r["ratio_module_vs_baseline"] >= 0.8 else "BELOW TARGET"
    print(
        f"  ratio model_weights / plain copy: {r['ratio_module_vs_baseline']:.3f} (target >= 0.8: {target})"
    )
    print(f"  ratio transfer only / plain copy: {r['ratio_transfer_only_vs_baseline']:.3f}")
    print(f"  inline verification overhead: {100 * r['inline_verify_overhead']:+.1f}% of download time")
    print(
        "  a separate verification pass would add: "
        f"{100 * r['separate_verify_pass_vs_download']:.1f}% of download time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="model_weights download throughput vs a plain HTTP copy")
    parser.add_argument("--quick", action="store_true", help="small checkpoint, few rounds (CI, < 60 s)")
    parser.add_argument("--shards", type=int)
    parser.add_argument("--shard-mib", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--link-mbps",
        type=float,
        action="append",
        help="also measure behind an emulated link of this many Mbit/s (repeatable; default 10000)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    shards = args.shards or 4
    shard_mib = args.shard_mib or (128 if args.quick else 512)
    rounds = args.rounds or (3 if args.quick else 5)
    links = [0.0, *(args.link_mbps or [10_000.0])]

    print(
        f"checkpoint: {shards} shards x {shard_mib} MiB + 4 small files, {rounds} rounds (median), "
        f"{os.cpu_count()} CPUs shared by client and stand-in"
    )
    reports = []
    with tempfile.TemporaryDirectory(prefix="bench-weights-") as tmp:
        for link in links:
            workdir = Path(tmp) / f"link-{int(link)}"
            workdir.mkdir()
            reports.append(measure(workdir, shards, shard_mib, rounds, args.workers, link))
            show(reports[-1], args.workers)
    if args.json:
        print(json.dumps(reports))


if __name__ == "__main__":
    main()
