"""Every module documents itself the way ansible-doc and Galaxy need (DOCUMENTATION, EXAMPLES, RETURN)."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

MODULES = sorted((Path(__file__).resolve().parents[4] / "plugins" / "modules").glob("*.py"))
REPO = Path(__file__).resolve().parents[8]


def module_doc(name: str) -> dict:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "--json", f"k3sllm.platform.{name}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PATH": str(Path(sys.executable).parent)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[f"k3sllm.platform.{name}"]


def argument_spec_keys(path: Path) -> set[str]:
    """Option names passed to AnsibleModule(argument_spec=...) or built as a module-level dict."""
    text = path.read_text()
    if "ARGUMENT_SPEC = {\n    **" in text:  # options shared through module_utils: read the built dict
        module = importlib.import_module(f"ansible_collections.k3sllm.platform.plugins.modules.{path.stem}")
        return set(module.ARGUMENT_SPEC)
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "argument_spec" and isinstance(node.value, ast.Dict):
            return {key.value for key in node.value.keys if isinstance(key, ast.Constant)}
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id.upper() == "ARGUMENT_SPEC" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            return {key.value for key in node.value.keys if isinstance(key, ast.Constant)}
    return set()


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_module_documentation(path):
    doc = module_doc(path.stem)
    assert doc["doc"]["short_description"]
    assert doc["doc"]["module"] == path.stem
    examples = yaml.safe_load(doc["examples"])
    assert any(f"k3sllm.platform.{path.stem}" in task for task in examples)
    assert doc["return"], "RETURN is empty"
    documented = set(doc["doc"].get("options") or {})
    spec = argument_spec_keys(path)
    assert spec, "could not find the module's argument_spec"
    assert documented == spec, f"documented {sorted(documented)} but the argument spec has {sorted(spec)}"
