"""The vLLM engines' objects, built directly from a normalised catalog (no render playbook)."""

from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.filter.engines import FilterModule
from ansible_collections.k3sllm.platform.plugins.plugin_utils import engines as eng
from ansible_collections.k3sllm.platform.plugins.plugin_utils.catalog import normalise_catalog

SHA = "a09a35458c702b33eeacc393d103063234e8bc28"
GIB = 1 << 30
SETTINGS = {
    "namespace": "k3sllm",
    "engine_port": 8000,
    "image": "docker.io/vllm/vllm-openai:v0.32.0",
    "node_selector": {"nvidia.com/gpu.present": "true"},
    "startup_timeout_seconds": 1805,
    "memory_limit_default_gib": 48,
    "memory_headroom_gib": 8,
    "memory_request_gib": 4,
    "cpu_request": "2",
    "shm_size_gib": 8,
    "home_size_gib": 8,
    "tmp_size_gib": 2,
    "weight_bytes": {},
    "run_as_user": 2000,
    "prometheus_namespace": "monitoring",
    "prometheus_selector": {"app.kubernetes.io/name": "prometheus"},
}
# Volume types Pod Security "restricted" admits (Kubernetes pod security standards).
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def catalog(*models: dict, revision: str = SHA) -> list[dict]:
    entries = models or (
        {"name": "qwen", "tool_call_parser": "hermes"},
        {"name": "llama", "memory_limit_gib": 20},
    )
    raw = [
        {
            "repo": f"org/{m['name']}",
            "revision": revision,
            "gpu_memory_utilization": 0.45,
            "max_model_len": 4096,
            **m,
        }
        for m in entries
    ]
    return normalise_catalog(
        raw,
        namespace="k3sllm",
        engine_port=8000,
        switcher_service="switcher",
        switcher_port=8080,
        weights_dir="/srv/k3sllm/models",
    )


def objects(models: list[dict] | None = None, **settings: object) -> list[dict]:
    return eng.engine_objects(models if models is not None else catalog(), {**SETTINGS, **settings})


def of_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def pods(objs: list[dict]) -> list[dict]:
    return [d["spec"]["template"]["spec"] for d in of_kind(objs, "Deployment")]


def test_each_model_gets_its_objects_named_from_the_catalog():
    objs = objects()
    assert [(o["kind"], o["metadata"]["name"]) for o in objs if o["kind"] in ("Deployment", "Service")] == [
        ("Deployment", "vllm-qwen"),
        ("Service", "vllm-qwen"),
        ("Deployment", "vllm-llama"),
        ("Service", "vllm-llama"),
    ]
    assert len(of_kind(objs, "ServiceMonitor")) == 2
    assert [p["metadata"]["name"] for p in of_kind(objs, "NetworkPolicy")] == ["vllm-only-from-switcher"]
    # Volumes and claims come before the Deployments that mount them.
    kinds = [o["kind"] for o in objs]
    assert kinds.index("PersistentVolume") < kinds.index("PersistentVolumeClaim") < kinds.index("Deployment")


def test_engine_args_and_urls_are_the_catalog_records():
    models = catalog()
    for model, pod in zip(models, pods(objects(models)), strict=True):
        (container,) = pod["containers"]
        assert container["args"] == model["engine"]["args"]
        assert container["ports"] == [{"name": "http", "containerPort": 8000}]
        (init,) = pod["initContainers"]
        assert {"name": "BOOT_GRANT_URL", "value": model["engine"]["boot_grant_url"]} in init["env"]
    service = of_kind(objects(models), "Service")[0]
    assert service["spec"]["ports"][0]["port"] == models[0]["engine"]["port"]
    assert service["spec"]["selector"] == models[0]["engine"]["labels"]


def test_boot_grant_script_is_python():
    compile(eng.BOOT_GRANT_WAIT, "<boot-grant>", "exec")


def test_every_container_is_locked_down():
    for pod in pods(objects()):
        assert pod["automountServiceAccountToken"] is False
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["runAsUser"] == security["runAsGroup"] == 2000
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        # fsGroup would make the kubelet re-own the host's weight files.
        assert "fsGroup" not in security
        for container in pod["initContainers"] + pod["containers"]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, container["name"]


def test_pods_meet_pod_security_restricted():
    for pod in pods(objects()):
        for volume in pod["volumes"]:
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, volume
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        for container in pod["initContainers"] + pod["containers"]:
            assert all("hostPort" not in port for port in container.get("ports", []))
            assert not container["securityContext"]["capabilities"].get("add")


def test_writable_places_on_the_read_only_root():
    for pod in pods(objects()):
        volumes = {v["name"]: v for v in pod["volumes"]}
        (engine,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in engine["volumeMounts"]}
        env = {e["name"]: e["value"] for e in engine["env"]}
        assert mounts[env["HOME"]] == "home" and volumes["home"]["emptyDir"] == {"sizeLimit": "8Gi"}
        assert mounts["/tmp"] == "tmp" and volumes["tmp"]["emptyDir"] == {"sizeLimit": "2Gi"}
        assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
        # getpass and Triton find a user name and home without a passwd entry.
        assert env["USER"] == env["LOGNAME"] == "vllm"
        assert env["VLLM_NO_USAGE_STATS"] == "1"


def test_weights_come_read_only_from_a_local_volume_bound_to_the_model_claim():
    models = catalog()
    objs = objects(models, weight_bytes={"qwen": 15 * GIB + 1})
    volumes = {v["spec"]["claimRef"]["name"]: v for v in of_kind(objs, "PersistentVolume")}
    claims = {c["metadata"]["name"]: c for c in of_kind(objs, "PersistentVolumeClaim")}
    for model, pod in zip(models, pods(objs), strict=True):
        (weights,) = [v for v in pod["volumes"] if v["name"] == "weights"]
        assert weights["persistentVolumeClaim"]["readOnly"] is True
        claim = claims[weights["persistentVolumeClaim"]["claimName"]]
        volume = volumes[claim["metadata"]["name"]]
        assert claim["spec"]["volumeName"] == volume["metadata"]["name"]
        assert claim["metadata"]["namespace"] == volume["spec"]["claimRef"]["namespace"] == "k3sllm"
        # Never the cluster's default storage class (K3s's local-path would provision an empty volume).
        assert claim["spec"]["storageClassName"] == volume["spec"]["storageClassName"] == ""
        assert volume["spec"]["local"]["path"] == model["engine"]["host_weights_path"]
        assert volume["spec"]["local"]["path"].endswith(f"/{model['name']}/{SHA}")
        assert volume["spec"]["accessModes"] == claim["spec"]["accessModes"] == ["ReadOnlyMany"]
        assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert "namespace" not in volume["metadata"]
        (term,) = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert term["matchExpressions"] == [
            {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}
        ]
        (engine,) = pod["containers"]
        (mount,) = [m for m in engine["volumeMounts"] if m["name"] == "weights"]
        assert mount == {"name": "weights", "mountPath": model["engine"]["model_path"], "readOnly": True}
    # Informational size: the downloaded weights rounded up, 1Gi when unknown.
    assert [v["spec"]["capacity"]["storage"] for v in of_kind(objs, "PersistentVolume")] == ["16Gi", "1Gi"]


def test_a_new_revision_gets_a_new_volume_and_claim():
    before = objects(catalog({"name": "qwen"}))
    after = objects(catalog({"name": "qwen"}, revision="b" * 40))
    for kind in ("PersistentVolume", "PersistentVolumeClaim"):
        (old,) = of_kind(before, kind)
        (new,) = of_kind(after, kind)
        assert old["metadata"]["name"] != new["metadata"]["name"]
    # The same catalog builds the same names (no churn between runs).
    assert objects(catalog({"name": "qwen"})) == before


def test_memory_limit_from_catalog_then_weights_then_default():
    models = catalog({"name": "fixed", "memory_limit_gib": 12.5}, {"name": "sized"}, {"name": "unknown"})
    objs = objects(models, weight_bytes={"sized": 15 * GIB + 1, "fixed": 100 * GIB})
    limits = [pod["containers"][0]["resources"]["limits"] for pod in pods(objs)]
    assert [limit["memory"] for limit in limits] == ["12.5Gi", "24Gi", "48Gi"]
    assert all(limit["nvidia.com/gpu"] == 1 for limit in limits)


def test_startup_probe_allows_the_startup_timeout():
    pod = pods(objects())[0]
    probe = pod["containers"][0]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 1805
    assert probe["failureThreshold"] == 181


def test_only_the_switcher_and_prometheus_pods_reach_the_engines():
    (policy,) = of_kind(objects(), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "vllm"}}
    assert spec["policyTypes"] == ["Ingress"]
    switcher, prometheus = spec["ingress"]
    assert switcher["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "switcher"}}}]
    assert prometheus["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    for rule in spec["ingress"]:
        assert rule["ports"] == [{"port": 8000, "protocol": "TCP"}]


def test_empty_catalog_still_walls_the_engines_off():
    assert [o["kind"] for o in objects([])] == ["NetworkPolicy"]


def test_input_is_not_changed():
    models = catalog()
    before = copy.deepcopy(models)
    objs = objects(models)
    pods(objs)[0]["containers"][0]["args"].append("--changed")
    assert models == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"run_as_user": 0}, "k3sllm_vllm_run_as_user is 0"),
        ({"run_as_user": "root"}, "k3sllm_vllm_run_as_user is 'root'"),
        ({"prometheus_selector": {}}, "vllm_prometheus_pod_selector is empty"),
    ],
)
def test_unsafe_settings_are_refused(change, message):
    with pytest.raises(eng.EngineManifestError, match=message):
        objects(**change)
    with pytest.raises(AnsibleFilterError, match=message):
        FilterModule().filters()["vllm_engine_objects"](catalog(), {**SETTINGS, **change})


def test_filter_names_missing_settings():
    settings = {k: v for k, v in SETTINGS.items() if k != "image"}
    with pytest.raises(AnsibleFilterError, match="settings lack image"):
        FilterModule().filters()["vllm_engine_objects"](catalog(), settings)
    with pytest.raises(AnsibleFilterError, match="settings must be a mapping"):
        FilterModule().filters()["vllm_engine_objects"](catalog(), [])
