"""The VRAM rule: does a set of engines fit on the GPU? One source for the whole project.

Used by the capacity plan (``plugin_utils/capacity.py``, the ``capacity_plan`` filter run by preflight and
the models play) and by the switcher at run time (``switcher/planner.py``: co-residency, who must sleep).
Standard library only: the switcher runs on the vLLM image without Ansible. ``switcher/vram.py`` is a
symbolic link to this file, and roles/model_switcher reads it through that link into the switcher's
ConfigMap, so both callers run the same bytes. (The link points from the switcher into the collection and
not the reverse: ``ansible-test sanity`` refuses links that leave the collection.)

Boundary, at most the whole GPU (``held <= capacity``): vLLM starts an engine only when the GPU's free
memory is at least ``gpu_memory_utilization x total`` and refuses it when free memory is less. With the
VRAM that the awake engines and the sleeping engines' residuals hold counted as used, an engine therefore
fits exactly when ``used + its share <= total``; two engines at 0.5 share one GPU (vLLM's documentation
gives that very example). A stricter ``< 1`` would refuse what vLLM accepts, and would forbid one awake
model at a time when each is planned as needing the whole GPU.
"""

from __future__ import annotations

# Relative slack for float sums: 0.34 + 0.56 + 0.1 is 1.0000000000000002, which must not exceed a GPU of 1.
# Far below any real allocation (1e-9 of 80 GiB is 86 bytes).
TOLERANCE = 1e-9


def vram_fits(held: float, capacity: float) -> bool:
    """Whether engines holding ``held`` in total fit a GPU of ``capacity`` (same unit: GiB, or fractions of
    the GPU with capacity 1.0). ``held`` counts each awake engine's share and each sleeping engine's residual."""
    return held <= capacity * (1.0 + TOLERANCE)


def valid_utilization(gpu_memory_utilization: float) -> bool:
    """vLLM's own range for ``--gpu-memory-utilization``: above 0, at most 1."""
    return 0.0 < gpu_memory_utilization <= 1.0
