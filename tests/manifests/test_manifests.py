"""Every rendered manifest, for every test inventory: schemas, custom kinds, and our policies."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from k3sllm_testlib import REPO, strip_private
from k3sllm_testlib.k8s_custom_kinds import CHECKERS

pytestmark = pytest.mark.slow

# Validate against the Kubernetes minor of the pinned K3s release.
K3S_DEFAULTS = REPO / "roles" / "k3s" / "defaults" / "main.yml"
SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|API_KEY|MASTER_KEY|DATABASE_URL)", re.I)
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def kubernetes_minor() -> str:
    if K3S_DEFAULTS.exists():
        version = str(yaml.safe_load(K3S_DEFAULTS.read_text()).get("k3s_version", ""))
        match = re.match(r"v?(\d+\.\d+)", version)
        if match:
            return match.group(1)
    return "1.33"


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] not in WORKLOAD_KINDS:
        return None
    return obj["spec"]["template"]["spec"]


def test_every_inventory_renders_objects(rendered):
    assert rendered.objects, f"{rendered.inventory}: render.yml wrote no manifests"


def test_builtin_kinds_match_the_kubernetes_schema(rendered):
    version = kubernetes_minor()
    problems = []
    for obj in rendered.objects:
        body = strip_private(obj)
        try:
            kubernetes_validate.validate(body, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if (obj["apiVersion"], obj["kind"]) not in CHECKERS:
                problems.append(
                    f"{obj['_file'].name}: no schema and no checker for {obj['apiVersion']} {obj['kind']}"
                )
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['_file'].name}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_custom_kinds_have_required_fields(rendered):
    problems = []
    for obj in rendered.objects:
        checker = CHECKERS.get((obj["apiVersion"], obj["kind"]))
        if checker:
            problems += [f"{obj['_file'].name}: {p}" for p in checker(obj)]
    assert not problems, "\n".join(problems)


def test_objects_carry_the_component_labels(rendered):
    for obj in rendered.objects:
        labels = obj["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/managed-by") == "k3sllm", obj["_file"].name
        assert labels.get("k3sllm.io/component") == obj["_file"].parent.name, obj["_file"].name


def test_images_are_pinned(rendered):
    for obj in rendered.objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            image = container["image"]
            tag = image.rsplit("@", 1)[-1] if "@" in image else image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", (
                f"{obj['_file'].name}: {container['name']} image {image} is not pinned"
            )


def test_our_containers_have_resources_and_probes(rendered):
    for obj in rendered.objects:
        spec = pod_spec(obj)
        if spec is None or obj["kind"] == "Job":
            continue
        for container in spec["containers"]:
            where = f"{obj['_file'].name}: container {container['name']}"
            resources = container.get("resources") or {}
            assert (resources.get("requests") or {}).get("memory"), f"{where} has no memory request"
            assert (resources.get("limits") or {}).get("memory"), f"{where} has no memory limit"
            assert container.get("readinessProbe"), f"{where} has no readinessProbe"
            assert container.get("livenessProbe"), f"{where} has no livenessProbe"


def test_secrets_are_passed_by_reference(rendered):
    for obj in rendered.objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for env in container.get("env") or []:
                if SECRET_NAME.search(env["name"]):
                    assert "valueFrom" in env, (
                        f"{obj['_file'].name}: {env['name']} is set literally; use a secretKeyRef"
                    )


def test_rendered_secrets_hold_no_values(rendered):
    for obj in rendered.of_kind("Secret"):
        for field in ("data", "stringData"):
            for key, value in (obj.get(field) or {}).items():
                assert value.startswith("<redacted"), (
                    f"{obj['_file'].name}: {field}.{key} was written in plain text"
                )


def test_render_is_one_object_per_file(rendered):
    files = [obj["_file"] for obj in rendered.objects]
    assert len(files) == len(set(files))
    assert all(isinstance(f, Path) for f in files)
