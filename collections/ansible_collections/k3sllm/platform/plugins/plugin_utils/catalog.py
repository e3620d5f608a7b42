"""The model catalog, validated once and completed once (controller side, no Ansible imports).

``normalise_catalog`` turns the inventory's ``k3sllm_models`` into one record per model holding what each
consumer needs, so no role, template or module applies a catalog default or spells a cross-role name itself:

- ``engine``: the vLLM engine's object name (``vllm-<name>``), labels, Service URL and port, the command-line
  arguments of ``vllm serve``, where the weights live on the host and in the container, and the URL its
  init container asks the switcher for a boot grant at (roles/vllm);
- ``switcher``: the model's entry in the switcher's config (roles/model_switcher, switcher/config.py);
- ``capacity``: the figures the capacity plan reads (plugin_utils/capacity.py);
- every catalog field, with its default applied (``DEFAULTS``).

Adding a catalog field: declare it in roles/k3sllm/meta/argument_specs.yml, give it a default in ``DEFAULTS``
and, if a consumer needs it, put it in the consumer's part of the record below.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.k3sllm.platform.plugins.module_utils.vram import valid_utilization

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# The engine's object names are vllm-<name>: 42 characters keep them within DNS label limits (63).
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,40}[a-z0-9])?$")
PARSER_RE = re.compile(r"^[a-z0-9_]+$")

# Every engine pod carries these labels; the switcher's NetworkPolicies select engines by them.
ENGINE_SELECTOR = {"app.kubernetes.io/name": "vllm"}
# The switcher's pods carry these; the engines' NetworkPolicy admits them.
SWITCHER_SELECTOR = {"app.kubernetes.io/name": "switcher"}
MODEL_LABEL = "k3sllm.io/model"
# Where an engine finds its weights inside its container.
MODEL_MOUNT_ROOT = "/models"

REQUIRED = ("name", "repo", "revision", "gpu_memory_utilization", "max_model_len")
# The one place catalog defaults live. None: not set, the consumer leaves the setting out.
DEFAULTS: dict[str, Any] = {
    "served_name": None,
    "allow_patterns": None,
    "ignore_patterns": None,
    "dtype": "auto",
    "quantization": None,
    "tool_call_parser": None,
    "extra_args": [],
    "input_cost_per_million_tokens": None,
    "output_cost_per_million_tokens": None,
    "awake_by_default": False,
    "idle_ttl_seconds": 0,
    "priority": 0,
    "aliases": [],
    "memory_limit_gib": None,
}
KNOWN = frozenset(REQUIRED) | frozenset(DEFAULTS)


class CatalogError(ValueError):
    """A catalog that cannot be served; the message names the model, the field and the fix."""


def engine_name(model_name: str) -> str:
    """Name of a model's engine Deployment, Service and ServiceMonitor."""
    return f"vllm-{model_name}"


def engine_labels(model_name: str) -> dict[str, str]:
    return {**ENGINE_SELECTOR, "app.kubernetes.io/instance": engine_name(model_name), MODEL_LABEL: model_name}


def service_url(service: str, namespace: str, port: int) -> str:
    return f"http://{service}.{namespace}.svc:{int(port)}"


def unpinned_models(models: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Catalog entries whose revision is a branch or tag, not a commit sha (not reproducible)."""
    return [
        {"name": str(m.get("name")), "repo": str(m.get("repo")), "revision": str(m.get("revision"))}
        for m in models
        if not COMMIT_RE.match(str(m.get("revision", "")))
    ]


def _duplicates(values: Sequence[str]) -> list[str]:
    return [value for value, count in Counter(values).items() if count > 1]


def _check_entry(index: int, model: Any) -> None:
    if not isinstance(model, Mapping):
        raise CatalogError(
            f"k3sllm_models[{index}] must be a mapping with name, repo, revision, ..., not {model!r}"
        )
    label = model.get("name", f"entry {index}")
    missing = [key for key in REQUIRED if model.get(key) in (None, "")]
    if missing:
        raise CatalogError(
            f"k3sllm_models: {label} lacks {', '.join(missing)}; every model needs {', '.join(REQUIRED)}"
        )
    unknown = sorted(set(model) - KNOWN)
    if unknown:
        raise CatalogError(
            f"k3sllm_models: {label} has unknown fields {', '.join(unknown)}; the fields are listed in "
            "roles/k3sllm/meta/argument_specs.yml (k3sllm_models)"
        )
    name = model["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise CatalogError(
            f'k3sllm_models: name "{name}" is not usable as a Kubernetes name. Use at most 42 lowercase letters, '
            "digits, '-' or '.', starting and ending with a letter or digit (the served name clients use can "
            "differ: list it in aliases)."
        )
    gmu = model["gpu_memory_utilization"]
    if isinstance(gmu, bool) or not isinstance(gmu, int | float) or not valid_utilization(float(gmu)):
        raise CatalogError(
            f"k3sllm_models: {name} has gpu_memory_utilization {gmu!r}; it is the share of the GPU's memory the "
            "engine takes when awake and must be above 0 and at most 1"
        )
    length = model["max_model_len"]
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise CatalogError(
            f"k3sllm_models: {name} has max_model_len {length!r}; set the context length in tokens"
        )
    parser = model.get("tool_call_parser")
    if parser and not PARSER_RE.match(str(parser)):
        raise CatalogError(
            f'k3sllm_models: {name} has tool_call_parser "{parser}", which is not a vLLM parser name (lowercase '
            "letters, digits and '_', for example hermes, llama3_json, mistral; see vLLM's tool calling docs for "
            "the parser of your model)."
        )
    for key in ("aliases", "extra_args", "allow_patterns", "ignore_patterns"):
        value = model.get(key)
        if value is not None and (isinstance(value, str) or not isinstance(value, Sequence)):
            raise CatalogError(f"k3sllm_models: {name} has {key} {value!r}; it must be a list of strings")


def validate_catalog(models: Any) -> None:
    """Raise ``CatalogError`` for the first problem: entry fields, then names, then names with aliases."""
    if not isinstance(models, Sequence) or isinstance(models, str):
        raise CatalogError(f"k3sllm_models must be a list of models, not {type(models).__name__}")
    for index, model in enumerate(models):
        _check_entry(index, model)
    names = [str(m["name"]) for m in models]
    twice = _duplicates(names)
    if twice:
        raise CatalogError(
            f"k3sllm_models has duplicate names: {', '.join(twice)}. Each model needs its own name."
        )
    every = names + [str(alias) for m in models for alias in (m.get("aliases") or [])]
    twice = _duplicates(every)
    if twice:
        raise CatalogError(
            f"k3sllm_models: these names or aliases are used more than once: {', '.join(twice)}. "
            "A request must map to exactly one model."
        )


def with_defaults(model: Mapping[str, Any]) -> dict[str, Any]:
    """One catalog entry with every default applied (lists copied, so callers may change them)."""
    full = {key: (list(value) if isinstance(value, list) else value) for key, value in DEFAULTS.items()}
    full.update({key: (list(value) if isinstance(value, list) else value) for key, value in model.items()})
    for key, value in DEFAULTS.items():
        if full[key] is None and value is not None:
            full[key] = value
    return full


def engine_args(model: Mapping[str, Any], port: int) -> list[str]:
    """``vllm serve`` arguments for a model with its defaults applied."""
    args = [
        f"{MODEL_MOUNT_ROOT}/{model['name']}",
        f"--served-model-name={model['served_name'] or model['name']}",
        "--host=0.0.0.0",
        f"--port={int(port)}",
        "--enable-sleep-mode",
        f"--gpu-memory-utilization={model['gpu_memory_utilization']}",
        f"--max-model-len={model['max_model_len']}",
        f"--dtype={model['dtype']}",
    ]
    if model["quantization"]:
        args.append(f"--quantization={model['quantization']}")
    # Clients that send tools (Claude Code always does) get 400 from an engine without a parser.
    if model["tool_call_parser"]:
        args += ["--enable-auto-tool-choice", f"--tool-call-parser={model['tool_call_parser']}"]
    return args + [str(arg) for arg in model["extra_args"]]


def switcher_entry(model: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """The model as the switcher's config lists it (switcher/config.py ModelSpec)."""
    entry: dict[str, Any] = {
        "name": model["name"],
        "base_url": base_url,
        "aliases": [str(alias) for alias in model["aliases"]],
        "awake_by_default": bool(model["awake_by_default"]),
        "priority": int(model["priority"]),
    }
    if model["served_name"]:
        entry["served_name"] = model["served_name"]
    if float(model["idle_ttl_seconds"] or 0) > 0:
        entry["idle_ttl_seconds"] = model["idle_ttl_seconds"]
    entry["gpu_memory_utilization"] = model["gpu_memory_utilization"]
    return entry


def normalise_catalog(
    models: Sequence[Mapping[str, Any]],
    *,
    namespace: str,
    engine_port: int,
    switcher_service: str,
    switcher_port: int,
    weights_dir: str,
) -> list[dict[str, Any]]:
    """Validate ``k3sllm_models`` and return one complete record per model, in catalog order."""
    validate_catalog(models)
    records = []
    for raw in models:
        model = with_defaults(raw)
        name = model["name"]
        engine = engine_name(name)
        base_url = service_url(engine, namespace, engine_port)
        model["engine"] = {
            "name": engine,
            "labels": engine_labels(name),
            "port": int(engine_port),
            "base_url": base_url,
            "args": engine_args(model, engine_port),
            "host_weights_path": f"{weights_dir.rstrip('/')}/{name}/{model['revision']}",
            "model_path": f"{MODEL_MOUNT_ROOT}/{name}",
            "boot_grant_url": f"{service_url(switcher_service, namespace, switcher_port)}/boot/{name}",
        }
        model["switcher"] = switcher_entry(model, base_url)
        model["capacity"] = {
            "name": name,
            "gpu_memory_utilization": model["gpu_memory_utilization"],
            "awake_by_default": bool(model["awake_by_default"]),
        }
        records.append(model)
    return records


def switcher_models(catalog: Sequence[Mapping[str, Any]], *, plan_vram: bool) -> list[dict[str, Any]]:
    """The switcher config's ``models`` list from a normalised catalog.

    Without the GPU's size (``plan_vram`` false) the switcher keeps one model awake at a time, so the VRAM
    shares are left out (the switcher refuses shares without a GPU size).
    """
    entries = []
    for model in catalog:
        entry = dict(model["switcher"])
        if not plan_vram:
            entry.pop("gpu_memory_utilization", None)
        entries.append(entry)
    return entries
