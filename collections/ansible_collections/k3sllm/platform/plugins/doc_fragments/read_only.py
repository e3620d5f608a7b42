"""Documentation shared by modules that only read the host (safe in check mode)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    support: full
    description: The module changes nothing, so check mode runs it as usual.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
"""
