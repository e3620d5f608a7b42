"""Render every manifest of an inventory through playbooks/render.yml (the product seam) once per
test session, and hand the objects to the policy tests."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from k3sllm_testlib import BIN, REPO, ansible_env, session_folder

HERE = Path(__file__).resolve().parent
# Seconds for one inventory's render; the first test that needs the renders waits for all three.
RENDER_TIMEOUT = 600

# The example users copy, plus test inventories for the other shapes (multi-node + ACME, airgap).
INVENTORIES = {
    "example": REPO / "inventories" / "example",
    "acme-multinode": HERE / "inventories" / "acme-multinode",
    "airgap": HERE / "inventories" / "airgap",
}


@dataclass
class Rendered:
    inventory: str
    folder: Path
    objects: list[dict]  # each with an extra "_file" key naming where it was rendered

    @property
    def catalog(self) -> list[dict]:
        """k3sllm_models as the inventory sets it."""
        models = INVENTORIES[self.inventory] / "group_vars" / "all" / "models.yml"
        return yaml.safe_load(models.read_text())["k3sllm_models"]

    def of_kind(self, kind: str) -> list[dict]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def component(self, name: str) -> list[dict]:
        return [obj for obj in self.objects if obj["_file"].parent.name == name]


def render(inventory: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            str(REPO / "playbooks" / "render.yml"),
            "-e",
            f"k3sllm_render_dir={out} k3sllm_artifacts_dir={out.parent / 'artifacts'}",
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT,
    )
    if result.returncode != 0:
        pytest.fail(f"render.yml failed for {inventory}:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")


def load(name: str, out: Path) -> Rendered:
    objects = []
    for path in sorted(out.rglob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["_file"] = path
                objects.append(doc)
    return Rendered(name, out, objects)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The session's renders run inside whichever test asks first: give those tests the time."""
    for item in items:
        if {"rendered", "rendered_all"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.timeout(len(INVENTORIES) * RENDER_TIMEOUT))


@pytest.fixture(scope="session")
def rendered_all(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    def render_all(base: Path) -> None:
        for name, inventory in INVENTORIES.items():
            # Copy so the run's artifacts (generated passwords) never land in the repository.
            copy = base / name / "inventory"
            shutil.copytree(inventory, copy)
            render(copy, base / name / "rendered")

    base = session_folder(tmp_path_factory, "rendered", render_all)
    return {name: load(name, base / name / "rendered") for name in INVENTORIES}


@pytest.fixture(params=list(INVENTORIES), scope="session")
def rendered(request: pytest.FixtureRequest, rendered_all: dict[str, Rendered]) -> Rendered:
    return rendered_all[request.param]
