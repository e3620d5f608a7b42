"""Capacity plan for the model catalog: does it fit the GPU, the host RAM and the weights disk?

Pure Python (no Ansible imports), run on the controller by the ``capacity_plan`` filter (preflight and
model_weights). Whether engines fit in VRAM is decided by ``module_utils/vram.py``, the one rule the switcher
also applies at run time (co-residency). Catalog defaults come from ``catalog.DEFAULTS``.

The rules:

- ``vram_awake_set``: the models awake by default, plus the VRAM every other (sleeping) engine keeps, must
  fit the GPU's memory: ``sum(gpu_memory_utilization of awake) + sleepers * residual / gpu <= 1``
  (``vram.vram_fits``, which says why the boundary is inclusive).
- ``vram_single_model``: each model must be wakeable at all, alone, with every other engine asleep.
- ``weights_exceed_vram_share``: a model's weights must fit in the VRAM share it is given.
- ``host_ram_sleep`` (sleep level 1 only): sleeping engines keep their weights in pinned host RAM. After a
  reboot the switcher boots engines one at a time and puts each to sleep, so every model is asleep at once:
  all weights plus the host reserve must fit in host RAM.
- ``disk``: the weights still to download must fit in the free space of the weights disk.

All engines share one GPU (time-sliced); with several GPUs the smallest one is planned for.
Weight size on disk stands in for the in-memory size (true for unquantized checkpoints loaded in their dtype).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.k3sllm.platform.plugins.module_utils.vram import valid_utilization, vram_fits
from ansible_collections.k3sllm.platform.plugins.plugin_utils.catalog import DEFAULTS

MIB = 1 << 20
GIB = 1 << 30


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def gpu_memory_mib_from_facts(gpus: Iterable[Mapping[str, Any]] | None) -> float | None:
    """Smallest ``memory_total_mib`` of the nvidia_gpu_facts ``gpus`` list (None when there is no GPU)."""
    sizes = [float(g["memory_total_mib"]) for g in gpus or [] if g.get("memory_total_mib")]
    return min(sizes) if sizes else None


def capacity_plan(
    models: list[Mapping[str, Any]],
    *,
    gpu_memory_mib: float | None = None,
    host_ram_mib: float | None = None,
    disk_free_bytes: int | None = None,
    weight_bytes: Mapping[str, int] | None = None,
    present_bytes: Mapping[str, int] | None = None,
    sleep_level: int = 1,
    sleeping_vram_gib: float = 1.0,
    host_ram_reserve_gib: float = 16.0,
) -> dict[str, Any]:
    """Evaluate every rule; return per-model numbers, totals, ``violations`` and ``warnings``.

    A missing input (no GPU facts, unknown weight size) skips the rules that need it, with a warning: the
    caller decides whether a partial plan is acceptable (lab runs have no GPU).
    """
    weight_bytes = dict(weight_bytes or {})
    present_bytes = dict(present_bytes or {})
    violations: list[dict[str, Any]] = []
    warnings: list[str] = []
    if sleep_level not in (1, 2):
        violations.append(
            {
                "rule": "invalid_input",
                "model": None,
                "models": [],
                "message": f"sleep level must be 1 or 2, not {sleep_level!r}",
            }
        )

    rows: list[dict[str, Any]] = []
    for m in models:
        name = str(m.get("name"))
        gmu = float(m.get("gpu_memory_utilization", 0) or 0)
        weights = weight_bytes.get(name)
        present = min(int(present_bytes.get(name, 0) or 0), weights) if weights is not None else None
        rows.append(
            {
                "name": name,
                "awake_by_default": bool(m.get("awake_by_default", DEFAULTS["awake_by_default"])),
                "gpu_memory_utilization": gmu,
                "vram_mib": round(gmu * gpu_memory_mib) if gpu_memory_mib else None,
                "weight_bytes": weights,
                "present_bytes": present,
                "download_bytes": (weights - present)
                if weights is not None and present is not None
                else None,
                "sleep_ram_bytes": weights if sleep_level == 1 else 0,
            }
        )
        if not valid_utilization(gmu):
            violations.append(
                {
                    "rule": "invalid_gpu_memory_utilization",
                    "model": name,
                    "models": [name],
                    "gpu_memory_utilization": gmu,
                    "message": f"{name}: gpu_memory_utilization {gmu} must be above 0 and at most 1",
                }
            )
        if weights is None:
            warnings.append(f"{name}: weight size unknown; RAM, disk and VRAM-share checks skip it")

    count = len(rows)
    awake = [r for r in rows if r["awake_by_default"]]
    vram: dict[str, Any] = {"gpu_memory_mib": gpu_memory_mib, "sleeping_vram_gib": sleeping_vram_gib}
    if not gpu_memory_mib:
        warnings.append("GPU memory unknown (no GPU facts): VRAM rules skipped")
    else:
        gpu_bytes = gpu_memory_mib * MIB
        sleeping = count - len(awake)
        awake_share = sum(r["gpu_memory_utilization"] for r in awake)
        residual_share = sleeping * sleeping_vram_gib * 1024.0 / gpu_memory_mib
        total = awake_share + residual_share
        vram.update(
            awake=[r["name"] for r in awake],
            awake_fraction=round(awake_share, 4),
            sleeping_count=sleeping,
            sleeping_residual_fraction=round(residual_share, 4),
            total_fraction=round(total, 4),
        )
        if awake and not vram_fits(total, 1.0):
            violations.append(
                {
                    "rule": "vram_awake_set",
                    "model": awake[0]["name"],
                    "models": [r["name"] for r in awake],
                    "awake_fraction": round(awake_share, 4),
                    "residual_fraction": round(residual_share, 4),
                    "total_fraction": round(total, 4),
                    "message": (
                        "models awake by default ("
                        + ", ".join(f"{r['name']} {r['gpu_memory_utilization']}" for r in awake)
                        + f") take {awake_share:.3f} of the GPU and {sleeping} sleeping engines keep "
                        f"{sleeping} x {sleeping_vram_gib} GiB = {residual_share:.3f} of its "
                        f"{gpu_memory_mib:.0f} MiB: {total:.3f} > 1. Lower gpu_memory_utilization or wake fewer "
                        "models by default"
                    ),
                }
            )
        for r in rows:
            alone = r["gpu_memory_utilization"] + (count - 1) * sleeping_vram_gib * 1024.0 / gpu_memory_mib
            if valid_utilization(r["gpu_memory_utilization"]) and not vram_fits(alone, 1.0):
                violations.append(
                    {
                        "rule": "vram_single_model",
                        "model": r["name"],
                        "models": [r["name"]],
                        "total_fraction": round(alone, 4),
                        "message": (
                            f"{r['name']}: even alone it cannot wake: gpu_memory_utilization "
                            f"{r['gpu_memory_utilization']} + {count - 1} sleeping engines x {sleeping_vram_gib} GiB "
                            f"on a {gpu_memory_mib:.0f} MiB GPU = {alone:.3f} > 1"
                        ),
                    }
                )
            share = r["gpu_memory_utilization"] * gpu_bytes
            if (
                r["weight_bytes"] is not None
                and r["gpu_memory_utilization"] > 0
                and r["weight_bytes"] >= share
            ):
                violations.append(
                    {
                        "rule": "weights_exceed_vram_share",
                        "model": r["name"],
                        "models": [r["name"]],
                        "weight_bytes": r["weight_bytes"],
                        "vram_share_bytes": round(share),
                        "message": (
                            f"{r['name']}: weights of {_gib(r['weight_bytes'])} do not fit its VRAM share "
                            f"({r['gpu_memory_utilization']} x {gpu_memory_mib:.0f} MiB = {_gib(share)}), "
                            "leaving nothing for the KV cache. Raise gpu_memory_utilization or use a quantized model"
                        ),
                    }
                )

    ram: dict[str, Any] = {
        "host_ram_mib": host_ram_mib,
        "reserve_gib": host_ram_reserve_gib,
        "sleep_level": sleep_level,
    }
    if sleep_level == 1:
        known = [r for r in rows if r["weight_bytes"] is not None]
        need = sum(r["weight_bytes"] for r in known)
        ram["sleep_weights_bytes"] = need
        if host_ram_mib is None:
            warnings.append("host RAM unknown: the sleep-level-1 RAM rule was skipped")
        else:
            available = host_ram_mib * MIB - host_ram_reserve_gib * GIB
            ram["available_for_sleep_bytes"] = round(available)
            # With nothing to keep asleep there is nothing to check (a small lab host may be below the reserve).
            if need > 0 and need > available:
                biggest = sorted(known, key=lambda r: -r["weight_bytes"])
                violations.append(
                    {
                        "rule": "host_ram_sleep",
                        "model": biggest[0]["name"] if biggest else None,
                        "models": [r["name"] for r in biggest],
                        "sleep_weights_bytes": need,
                        "available_bytes": round(available),
                        "message": (
                            "at sleep level 1 every sleeping model keeps its weights in host RAM, and after a reboot "
                            "all sleep at once: "
                            + ", ".join(f"{r['name']} {_gib(r['weight_bytes'])}" for r in biggest)
                            + f" = {_gib(need)}, but {host_ram_mib:.0f} MiB of RAM minus the "
                            f"{host_ram_reserve_gib} GiB reserve leaves {_gib(max(available, 0))}. Use sleep level 2, "
                            "add RAM, or remove a model"
                        ),
                    }
                )

    disk: dict[str, Any] = {"free_bytes": disk_free_bytes}
    downloads = [r for r in rows if r["download_bytes"]]
    need_disk = sum(r["download_bytes"] for r in downloads)
    disk["download_bytes"] = need_disk
    if disk_free_bytes is None:
        warnings.append("free disk unknown: the disk rule was skipped")
    elif need_disk > disk_free_bytes:
        violations.append(
            {
                "rule": "disk",
                "model": max(downloads, key=lambda r: r["download_bytes"])["name"],
                "models": [r["name"] for r in downloads],
                "download_bytes": need_disk,
                "free_bytes": disk_free_bytes,
                "message": (
                    "weights still to download ("
                    + ", ".join(f"{r['name']} {_gib(r['download_bytes'])}" for r in downloads)
                    + f") total {_gib(need_disk)}, but the weights disk has {_gib(disk_free_bytes)} free"
                ),
            }
        )

    return {
        "ok": not violations,
        "violations": violations,
        "warnings": warnings,
        "summary": "; ".join(v["message"] for v in violations),
        "models": rows,
        "vram": vram,
        "host_ram": ram,
        "disk": disk,
    }
