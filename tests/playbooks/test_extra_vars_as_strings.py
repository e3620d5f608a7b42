"""Every int, float and bool setting works when given as `-e name=value`, which Ansible hands over as a string.

Role argument validation accepts "8" for an int option but does not convert the variable, so each
expression that consumes a typed option must coerce it (`| int`, `| float`, `| bool`). The options are
read from every role's meta/argument_specs.yml, so a new option is covered without editing this file:
- a static check parses every Jinja expression of the roles and playbooks and requires each
  comparison, arithmetic, condition, filter argument or data literal that uses a typed option to
  coerce it first;
- preflight runs with every typed preflight and k3sllm option given as -e strings;
- render.yml renders the example inventory twice, with every typed option of the rendering roles given
  as JSON values and as -e strings, and the manifests must be identical.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jinja2
import jinja2.nodes as nodes
import pytest
import yaml
from k3sllm_testlib import BIN, REPO, ansible_env

TYPED = ("int", "float", "bool")
COERCE = {"int": {"int", "float"}, "float": {"float", "int"}, "bool": {"bool"}}
# Filters that pass a value on unchanged (`x | default(1) | int` is coerced).
TRANSPARENT_FILTERS = {"default", "d"}
# Tests that do not look at the value's type.
TYPE_BLIND_TESTS = {"defined", "undefined", "none"}
# Keys whose string values Ansible evaluates as bare Jinja expressions.
CONDITIONAL_KEYS = {"when", "changed_when", "failed_when", "until", "that"}


def typed_options(roles: tuple[str, ...] | None = None) -> dict[str, str]:
    """Top-level int/float/bool options of every role's argument specs (those -e name=value can set)."""
    found: dict[str, str] = {}
    for spec_file in sorted(REPO.glob("roles/*/meta/argument_specs.yml")):
        role = spec_file.parent.parent.name
        if roles is not None and role not in roles:
            continue
        for entry in (yaml.safe_load(spec_file.read_text())["argument_specs"] or {}).values():
            for name, option in (entry.get("options") or {}).items():
                if option.get("type") in TYPED:
                    found[name] = option["type"]
    return found


def role_default(name: str):
    for defaults in sorted(REPO.glob("roles/*/defaults/main.yml")):
        values = yaml.safe_load(defaults.read_text()) or {}
        if name in values:
            return values[name]
    raise KeyError(name)


def as_extra_var(value) -> str:
    """The text a user types after name= on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------------------------------------
# The static check


@dataclass(frozen=True)
class Misuse:
    file: str
    line: int
    option: str
    kind: str
    context: str

    def __str__(self) -> str:
        coerce = {"int": "| int", "float": "| float", "bool": "| bool"}[self.kind]
        return f"{self.file}:{self.line}: {self.option} ({self.kind}) {self.context}: coerce it with {coerce}"


_ENV = jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])


def _parents(tree: nodes.Node):
    stack = [(tree, None)]
    while stack:
        node, parent = stack.pop()
        yield node, parent
        for child in node.iter_child_nodes():
            stack.append((child, node))


def misuses(
    source: str, options: dict[str, str], mode: str, file: str = "<string>", line: int = 1
) -> list[Misuse]:
    """Uses of typed options in one Jinja source that would break (or change meaning) on a string.

    mode: "text" (a template file rendered to text), "value" (a templated YAML string), "cond" (a
    bare conditional expression such as `when:`).
    """
    if mode == "cond" and "{{" not in source and "{%" not in source:
        source = "{{ (" + source + ") }}"
    try:
        tree = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return [Misuse(file, line + exc.lineno - 1, "?", "int", f"cannot be parsed: {exc.message}")]
    parent_of = {id(node): parent for node, parent in _parents(tree)}
    found = []
    for node, _ in _parents(tree):
        if isinstance(node, nodes.Filter) and node.name in ("selectattr", "rejectattr") and node.args:
            # selectattr('flag') tests truthiness: the string "false" passes. The truthy test with
            # convert_bool (selectattr('flag', 'ansible.builtin.truthy', true)) reads it as Ansible does.
            attribute, rest = (
                node.args[0],
                [a.value if isinstance(a, nodes.Const) else None for a in node.args[1:]],
            )
            truth_test = not rest or str(rest[0]).rsplit(".", 1)[-1] in ("truthy", "falsy")
            converted = rest[1:2] == [True] or any(k.key == "convert_bool" for k in node.kwargs)
            if (
                isinstance(attribute, nodes.Const)
                and options.get(attribute.value) == "bool"
                and truth_test
                and not converted
            ):
                found.append(
                    Misuse(
                        file,
                        line + node.lineno - 1,
                        attribute.value,
                        "bool",
                        f"tested for truth by {node.name}",
                    )
                )
        if not (isinstance(node, nodes.Name) and node.ctx == "load" and node.name in options):
            continue
        kind = options[node.name]
        child, parent = node, parent_of[id(node)]
        while (
            isinstance(parent, nodes.Filter) and parent.node is child and parent.name in TRANSPARENT_FILTERS
        ):
            child, parent = parent, parent_of[id(parent)]
        problem = None
        if isinstance(parent, nodes.Filter) and parent.node is child:
            if parent.name not in COERCE[kind] and parent.name not in ("string", "quote"):
                problem = f"is piped into {parent.name} without coercion"
        elif isinstance(parent, nodes.Test) and parent.node is child:
            if parent.name not in TYPE_BLIND_TESTS:
                problem = f"is tested with `is {parent.name}` without coercion"
        elif isinstance(parent, nodes.Output):
            whole_value = mode == "value" and len(parent.nodes) == 1
            if mode == "cond":
                problem = "is used as a condition"
            elif kind == "bool" and not whole_value and mode == "text":
                problem = "is written into rendered data (True and 'true' differ)"
        elif isinstance(parent, nodes.Concat):
            if kind == "bool" and mode == "text":
                problem = "is joined into rendered data (True and 'true' differ)"
        else:
            problem = f"is used in {type(parent).__name__.lower()} without coercion"
        if problem:
            found.append(Misuse(file, line + node.lineno - 1, node.name, kind, problem))
    return found


class _LineLoader(yaml.SafeLoader):
    """Composes YAML without constructing it, so Ansible's tags (!vault, !unsafe) need no constructor."""


def _yaml_strings(path: Path):
    """(string, line, is_conditional) for every scalar of a YAML file."""
    with path.open() as handle:
        for document in yaml.compose_all(handle, Loader=_LineLoader):
            stack = [(document, False)]
            while stack:
                node, conditional = stack.pop()
                if isinstance(node, yaml.MappingNode):
                    for key, value in node.value:
                        stack.append(
                            (value, isinstance(key, yaml.ScalarNode) and key.value in CONDITIONAL_KEYS)
                        )
                elif isinstance(node, yaml.SequenceNode):
                    stack.extend((item, conditional) for item in node.value)
                elif isinstance(node, yaml.ScalarNode) and isinstance(node.value, str):
                    # A block scalar (> or |) starts on the line after its indicator.
                    first = node.start_mark.line + (2 if node.style in (">", "|") else 1)
                    yield node.value, first, conditional and node.tag.endswith(":str")


def ansible_sources():
    """Every file of the roles and playbooks that Ansible templates (not meta/ and files/)."""
    role_files = [
        p for p in REPO.glob("roles/*/*/**/*") if p.relative_to(REPO).parts[2] not in ("meta", "files")
    ]
    for path in sorted(role_files) + sorted(REPO.glob("playbooks/*.yml")):
        if not path.is_file():
            continue
        if path.suffix == ".j2":
            yield path, "text"
        elif path.suffix in (".yml", ".yaml"):
            yield path, "yaml"


def all_misuses(options: dict[str, str]) -> list[Misuse]:
    found = []
    for path, kind in ansible_sources():
        shown = str(path.relative_to(REPO))
        if kind == "text":
            found += misuses(path.read_text(), options, "text", shown)
            continue
        for value, line, conditional in _yaml_strings(path):
            if conditional:
                found += misuses(value, options, "cond", shown, line)
            elif "{{" in value or "{%" in value:
                found += misuses(value, options, "value", shown, line)
    return found


# The check itself must be able to fail: known-bad and known-good snippets.
OPTIONS = {"n": "int", "f": "float", "b": "bool"}


@pytest.mark.parametrize(
    ("source", "mode", "bad"),
    [
        ("n > 0", "cond", True),
        ("n | int > 0", "cond", False),
        ("b", "cond", True),
        ("not b", "cond", True),
        ("b | bool", "cond", False),
        ("b | default(false) | bool", "cond", False),
        ("n is defined", "cond", False),
        ("{{ n / 10 }}", "value", True),
        ("{{ (n | int / 10) | round }}", "value", False),
        ("{{ n }}", "value", False),  # whole value: the module's or keyword's type converts it
        ("--timeout={{ n }}s", "value", False),
        ("{{ x | some_filter(level=n) }}", "value", True),
        ("{{ x | some_filter(level=n | int) }}", "value", False),
        ("{{ {'enabled': b} | to_nice_yaml }}", "value", True),
        ("{{ b | to_json }}", "text", True),
        ("{{ b | bool | to_json }}", "text", False),
        ("replicas: {{ n }}", "text", False),
        ("enabled: {{ b }}", "text", True),
        ("{% if b %}x{% endif %}", "text", True),
        ("{% if b | bool %}x{% endif %}", "text", False),
        ("{{ 'https://h:' ~ n }}", "value", False),
        ("{{ hosts | selectattr('b') | list }}", "value", True),
        ("{{ hosts | selectattr('b', 'defined') | list }}", "value", False),
        ("{{ hosts | selectattr('b', 'truthy') | list }}", "value", True),
        ("{{ hosts | selectattr('b', 'ansible.builtin.truthy', true) | list }}", "value", False),
        ("{{ f * 2 }}", "value", True),
        ("{{ f | float * 2 }}", "value", False),
    ],
)
def test_static_check_tells_coerced_from_uncoerced(source, mode, bad):
    assert bool(misuses(source, OPTIONS, mode)) is bad


def test_typed_options_are_found_in_every_role():
    options = typed_options()
    assert options["preflight_min_cpus"] == "int"
    assert options["preflight_min_memory_gib"] == "float"
    assert options["k3sllm_gpu_required"] == "bool"
    roles = {path.parent.parent.name for path in REPO.glob("roles/*/meta/argument_specs.yml")}
    assert len(roles) >= 10 and len(options) >= 50


@functools.cache
def misuses_by_option() -> dict[str, list[str]]:
    """One scan of every source for every typed option (the parametrised test below reads it)."""
    found: dict[str, list[str]] = {}
    for misuse in all_misuses(typed_options()):
        found.setdefault(misuse.option, []).append(str(misuse))
    return found


@pytest.mark.parametrize("option", sorted(typed_options()))
def test_every_use_of_a_typed_option_coerces_it(option):
    found = misuses_by_option().get(option, [])
    assert not found, "\n".join(found)


def test_the_static_check_reads_every_source():
    """Unparsable Jinja is reported, not skipped (its option name is "?")."""
    assert misuses_by_option().get("?", []) == []


# ---------------------------------------------------------------------------------------------
# Runs with -e strings


def extra_var_args(values: dict) -> list[str]:
    args = []
    for name, value in sorted(values.items()):
        args += ["-e", f"{name}={as_extra_var(value)}"]
    return args


def literal_defaults(options: dict[str, str], overrides: dict) -> dict:
    """A value for each option: the override, else the role default when it is a literal."""
    values = {}
    for name in options:
        if name in overrides:
            values[name] = overrides[name]
            continue
        try:
            value = role_default(name)
        except KeyError:
            continue
        if isinstance(value, (bool, int, float)):
            values[name] = value
    return values


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_preflight_runs_with_every_typed_option_given_as_a_string(local_inventory, run_playbook, tmp_path):
    """Lab mode (no GPU on the bus) with a stand-in nvidia-smi, so the VRAM plan and the compute
    capability check consume the strings too."""
    fixture = REPO / "collections/ansible_collections/k3sllm/platform/tests/unit/plugins/modules/fixtures"
    standin = tmp_path / "bin" / "nvidia-smi"
    standin.parent.mkdir()
    # nvidia-smi stand-in: -q -x prints an H100's XML log, --query-gpu=index,compute_cap its capability.
    standin.write_text(
        f'#!/bin/sh\ncase "$*" in *compute_cap*) echo "0, 9.0" ;; *) cat {fixture / "nvidia-smi-h100.xml"} ;; esac\n'
    )
    standin.chmod(0o755)
    options = typed_options(("preflight", "k3sllm"))
    lab = {
        "k3sllm_gpu_required": False,
        "preflight_min_memory_gib": 0.5,
        "preflight_min_cpus": 1,
        "preflight_min_disk_gib": 0.1,
        "k3sllm_sleep_level": 2,
        "k3sllm_sleeping_vram_gib": 1.5,
        "k3sllm_host_ram_reserve_gib": 0.5,
    }
    values = literal_defaults(options, lab)
    assert set(lab) <= set(values)
    # A list of ints arrives as one comma-separated string; ports 1 and 2 are free on any test machine.
    values["preflight_required_ports"] = "1,2"
    inventory = local_inventory(
        {
            "k3sllm_hostname": "llm.test",
            "preflight_fact_dir": str(tmp_path / "facts"),
            "preflight_required_ports": [],
            "k3sllm_models": [
                {
                    "name": "tiny",
                    "repo": "org/tiny",
                    "revision": "0" * 40,
                    "gpu_memory_utilization": 0.4,
                    "max_model_len": 2048,
                    "dtype": "bfloat16",
                }
            ],
        }
    )
    env = {"PATH": f"{standin.parent}:{os.environ['PATH']}"}
    result = run_playbook(
        "playbooks/host.yml", inventory, "--check", "--tags", "preflight", *extra_var_args(values), env=env
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "LAB MODE" in output  # the string "false" was read as false
    assert "'compute capability for model tiny: ok'" in output
    assert "'VRAM plan: ok'" in output
    assert "'free ports: ok'" in output

    # A string that should fail a check fails that check, with its message, not with a type error.
    failing = {**values, "preflight_min_cpus": 4096, "preflight_min_memory_gib": 1e6}
    result = run_playbook(
        "playbooks/host.yml", inventory, "--check", "--tags", "preflight", *extra_var_args(failing), env=env
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "2 preflight check(s) failed" in output, output[-4000:]
    assert "preflight_min_cpus is 4096" in output and "preflight_min_memory_gib is" in output


def typed_specs() -> dict[str, dict]:
    """Each typed top-level option's spec (type, choices), from every role and entry point."""
    specs: dict[str, dict] = {}
    for spec_file in sorted(REPO.glob("roles/*/meta/argument_specs.yml")):
        for entry in (yaml.safe_load(spec_file.read_text())["argument_specs"] or {}).values():
            for name, option in (entry.get("options") or {}).items():
                if option.get("type") in TYPED:
                    specs[name] = {k: option[k] for k in ("type", "choices") if k in option}
    return specs


def sample_value(name: str, spec: dict):
    """The role default when it is a literal, else a value of the right type (a choice where there are some)."""
    if spec.get("choices"):
        return spec["choices"][0]
    value = literal_defaults({name: spec["type"]}, {}).get(name)
    if value is not None:
        return value
    return {"int": 1, "float": 0.5, "bool": True}[spec["type"]]


@pytest.mark.slow
def test_argument_validation_accepts_every_typed_option_as_a_string(tmp_path):
    """Ansible's role argument validation, for every typed option of every role at once, with -e strings;
    and a string that is not a number, or not a choice, is refused naming the option."""
    specs = typed_specs()
    playbook = tmp_path / "validate.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Validate the typed options",
                            "ansible.builtin.validate_argument_spec": {"argument_spec": specs},
                        }
                    ],
                }
            ]
        )
    )
    values = {name: sample_value(name, spec) for name, spec in specs.items()}

    def run(overrides: dict) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                "localhost,",
                "-c",
                "local",
                str(playbook),
                *extra_var_args({**values, **overrides}),
            ],
            cwd=REPO,
            env=ansible_env(),
            capture_output=True,
            text=True,
            timeout=240,
        )

    good = run({})
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-2000:]
    bad = run({"preflight_min_cpus": "many", "k3sllm_sleep_level": 3, "k3s_upgrade_run": "maybe"})
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0
    for name in ("preflight_min_cpus", "k3sllm_sleep_level", "k3s_upgrade_run"):
        assert name in output, output[-3000:]


RENDER_ROLES = (
    "k3sllm",
    "k8s_apply",
    "gpu_operator",
    "tls",
    "observability",
    "vllm",
    "model_switcher",
    "litellm",
)


def render(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(REPO / "inventories" / "example"),
            str(REPO / "playbooks" / "render.yml"),
            "-e",
            f"k3sllm_render_dir={out / 'rendered'} k3sllm_artifacts_dir={out / 'artifacts'}",
            *args,
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two renders of the example inventory
def test_render_is_the_same_with_typed_values_and_with_strings(tmp_path):
    options = typed_options(RENDER_ROLES)
    values = literal_defaults(options, {"k3sllm_render_only": True})
    assert len(values) >= 20, values
    typed = render(tmp_path / "typed", "-e", json.dumps(values))
    assert typed.returncode == 0, typed.stdout[-4000:]
    strings = render(tmp_path / "strings", *extra_var_args(values))
    assert strings.returncode == 0, strings.stdout[-4000:]
    expected, got = tree(tmp_path / "typed" / "rendered"), tree(tmp_path / "strings" / "rendered")
    assert expected, "render.yml wrote nothing"
    assert sorted(got) == sorted(expected)
    for name, text in expected.items():
        assert got[name] == text, f"{name} differs when settings are given as -e strings"
    shutil.rmtree(tmp_path)
