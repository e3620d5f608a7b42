"""The pieces the chart-installing roles share: values merging, the values YAML, the HelmChart object."""

from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.k3sllm.platform.plugins.plugin_utils import charts


class TaggedText(str):
    """Stands in for the str subclass Ansible hands a filter for a templated value."""


class LazyDict(dict):  # type: ignore[type-arg]
    """Stands in for the dict subclass Ansible hands a filter for a templated mapping."""


class LazyList(list):  # type: ignore[type-arg]
    pass


def test_values_yaml_writes_ansible_subclasses_as_plain_yaml():
    shared = {"drop": ["ALL"]}
    data = LazyDict(name=TaggedText("nvidia"), ports=LazyList([1, 2]), a=shared, b=shared, on=True)
    text = charts.to_yaml(data)
    assert text == (
        "name: nvidia\nports:\n- 1\n- 2\na:\n  drop:\n  - ALL\nb:\n  drop:\n  - ALL\n'on': true\n"
    )
    assert yaml.safe_load(text) == {"name": "nvidia", "ports": [1, 2], "a": shared, "b": shared, "on": True}


@pytest.mark.parametrize(
    ("base", "extra", "expected"),
    [
        ({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}, {"a": {"b": 1, "c": 3}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),  # lists replace
        ({"a": {"b": 1}}, {"a": "text"}, {"a": "text"}),  # a scalar replaces a mapping
        ({"a": 1}, {"z": {"y": 1}}, {"a": 1, "z": {"y": 1}}),
        ({"a": 1}, {}, {"a": 1}),
    ],
)
def test_deep_merge(base, extra, expected):
    assert charts.deep_merge(base, extra) == expected


def test_deep_merge_keeps_base_order_and_copies_extra():
    extra = {"new": {"x": [1]}, "a": {"c": 3}}
    merged = charts.deep_merge({"a": {"b": 1}, "d": 4}, extra)
    assert list(merged) == ["a", "d", "new"]
    assert list(merged["a"]) == ["b", "c"]
    merged["new"]["x"].append(2)
    assert extra["new"]["x"] == [1]


@pytest.mark.parametrize(
    ("given", "expected"), [("", ""), (None, ""), ("r.lan:5000//", "r.lan:5000"), ("r.lan", "r.lan")]
)
def test_registry_trailing_slashes(given, expected):
    assert charts.registry(given) == expected


def test_helm_chart_version_is_text():
    spec = charts.helm_chart("c", "ns", {}, repo="https://r", version=1.5)["spec"]  # type: ignore[arg-type]
    assert spec["version"] == "1.5"
    assert spec["valuesContent"] == "{}\n"


def test_as_filter_turns_a_builder_error_into_a_task_failure():
    def builder(settings):
        charts.require(settings, ("namespace",), "demo_objects")
        return [{"kind": "Namespace", "metadata": {"name": settings["namespace"]}}]

    demo = charts.as_filter(builder)
    assert demo({"namespace": "x"}) == [{"kind": "Namespace", "metadata": {"name": "x"}}]
    assert demo.__name__ == "builder"
    with pytest.raises(AnsibleFilterError, match="demo_objects: settings must be a mapping, not list"):
        demo(["namespace"])
    with pytest.raises(AnsibleFilterError, match="demo_objects: settings lack namespace"):
        demo({})
