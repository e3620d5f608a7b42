#!/usr/bin/env python3
"""After `mutmut run`: per-file counts, and a failure for every surviving mutant not listed as equivalent.

The list is a Markdown file whose entries name a mutant in backticks followed by the reason it cannot
be killed (`switcher.planner.x_fits__mutmut_3`: ...). Usage (from the repository root, as `make
mutation` does): mutation_check.py [equivalents.md]. Reads `mutmut results --all true`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

# Statuses that count as the tests noticing the mutant (a timeout: the mutant made a test hang).
DETECTED = {"killed", "timeout", "caught by type check"}
DEFAULT_LIST = Path("tests/switcher/mutation-equivalents.md")


def results(mutmut: str) -> dict[str, str]:
    out = subprocess.run(
        [mutmut, "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            found[name] = status
    return found


def listed(path: Path) -> dict[str, str]:
    """Mutant name -> reason, from lines like "- `name`: reason" (several names may share a reason)."""
    entries = {}
    for line in path.read_text().splitlines():
        names = re.findall(r"`(switcher\.[^`\s]+__mutmut_\d+)`", line)
        reason = re.sub(r"`[^`]*__mutmut_\d+`[,;]?\s*", "", line).strip(" -:*")
        for name in names:
            entries[name] = reason
    return entries


def main() -> int:
    equivalents_file = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_LIST
    mutmut = str(Path(sys.executable).parent / "mutmut")
    found = results(mutmut)
    equivalents = listed(equivalents_file) if equivalents_file.exists() else {}
    per_file: dict[str, Counter] = defaultdict(Counter)
    for name, status in found.items():
        module = name.split(".x", 1)[0]
        per_file[module]["killed" if status in DETECTED else status] += 1
    for module, counts in sorted(per_file.items()):
        print(f"{module}: " + ", ".join(f"{status} {n}" for status, n in sorted(counts.items())))

    unexplained = [
        n for n, s in found.items() if s not in DETECTED and s != "not checked" and n not in equivalents
    ]
    unchecked = [n for n, s in found.items() if s == "not checked"]
    stale = [n for n in equivalents if found.get(n) in DETECTED]
    missing_reason = [n for n, reason in equivalents.items() if not reason]
    for name in stale:
        print(f"listed as equivalent but now killed (remove it from {equivalents_file}): {name}")
    for name in missing_reason:
        print(f"listed without a reason in {equivalents_file}: {name}")
    if unchecked:
        print(f"{len(unchecked)} mutants not checked in this run (a partial `mutmut run`)")
    for name in unexplained:
        print(f"SURVIVED, not listed as equivalent: {name} ({found[name]}); see `mutmut show {name}`")
    if unexplained or missing_reason:
        print(
            f"{len(unexplained)} surviving mutants without a reason: kill them with a test or list them "
            f"in {equivalents_file} with why they cannot be killed"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
