"""The switcher runs on the vLLM image: it may import only the stdlib and what that image ships."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "switcher"
SHIPPED = {"aiohttp", "fastapi", "uvicorn", "httpx", "prometheus_client", "pydantic", "yaml"}


def test_switcher_imports_only_stdlib_and_what_vllm_ships():
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    assert "aiohttp" in found  # the scan works
    foreign = {
        top: files
        for top, files in found.items()
        if top not in sys.stdlib_module_names and top not in SHIPPED and top != "__future__"
    }
    assert foreign == {}, f"imports not on the vLLM image: {foreign}"
