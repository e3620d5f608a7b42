#!/usr/bin/python
# Copyright: k3sllm contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: delete a component's Kubernetes objects that are no longer rendered, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: k8s_prune
short_description: Delete the objects of a k3sllm component that are no longer rendered
description:
  - Lists, for each of O(kinds), the objects labelled C(app.kubernetes.io/managed-by=k3sllm) and
    C(k3sllm.io/component=<component>) (the labels M(k3sllm.platform.k8s_render)'s callers and the
    C(k8s_apply) role stamp), and deletes those that O(keep) does not name.
  - An object is kept when an entry of O(keep) has its kind and name, and its namespace where both
    name one.
  - A kind the API server does not serve (its CustomResourceDefinition is not installed yet) has no
    objects, so there is nothing to prune; it is listed in RV(unserved_kinds), not an error.
  - Every kind is handled in one module call with one API discovery, instead of one
    C(kubernetes.core.k8s_info) and one C(kubernetes.core.k8s) task per kind.
  - Deletion does not wait for the objects to be gone (finalizers, graceful pod termination).
version_added: 0.1.0
author: k3sllm maintainers (!UNKNOWN)
requirements:
  - kubernetes (the Python client kubernetes.core uses)
options:
  kubeconfig:
    description: Kubeconfig on the host the task runs on (the controller, for the C(k8s_apply) role).
    type: path
    required: true
  component:
    description: Value of the C(k3sllm.io/component) label whose objects are candidates for deletion.
    type: str
    required: true
  kinds:
    description: The kinds to prune; objects of other kinds are never touched.
    type: list
    elements: dict
    required: true
    suboptions:
      api_version:
        description: Group and version, for example C(apps/v1), or C(v1) for the core group.
        type: str
        required: true
      kind:
        description: The kind, for example C(Deployment).
        type: str
        required: true
      namespace:
        description: Only objects in this namespace; every namespace when left out.
        type: str
  keep:
    description:
      - The objects the component still renders, by kind, name and (optional) namespace; pass only
        these fields, never whole objects, so no Secret data reaches the module's arguments.
      - The C(k3sllm.platform.k8s_object_refs) filter builds this list from rendered objects.
    type: list
    elements: dict
    required: true
    suboptions:
      kind:
        description: Kind of the object.
        type: str
        required: true
      name:
        description: Name of the object.
        type: str
        required: true
      namespace:
        description: Namespace of the object; an entry without one keeps the name in every namespace.
        type: str
attributes:
  check_mode:
    description: Lists the objects and reports those it would delete in RV(deleted); deletes nothing.
    support: full
  diff_mode:
    description: No diff is shown; RV(deleted) names the objects.
    support: none
"""

EXAMPLES = r"""
- name: Delete engines of models removed from the catalog
  k3sllm.platform.k8s_prune:
    kubeconfig: "{{ k3sllm_kubeconfig }}"
    component: vllm
    kinds:
      - {api_version: apps/v1, kind: Deployment, namespace: k3sllm}
      - {api_version: v1, kind: Service, namespace: k3sllm}
      - {api_version: monitoring.coreos.com/v1, kind: ServiceMonitor, namespace: k3sllm}
    keep: "{{ vllm_objects | k3sllm.platform.k8s_object_refs }}"
  delegate_to: localhost
"""

RETURN = r"""
deleted:
  description: The objects deleted (in check mode, those that would be), each with kind, name and, for
    namespaced objects, namespace.
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "Deployment", "namespace": "k3sllm", "name": "vllm-beta"}]
unserved_kinds:
  description: The O(kinds) the API server does not serve (no CustomResourceDefinition yet), as
    C(<api_version>/<kind>); they had nothing to prune.
  returned: always
  type: list
  elements: str
  sample: ["monitoring.coreos.com/v1/ServiceMonitor"]
"""

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.k3sllm.platform.plugins.module_utils.k8s_prune import (
    label_selector,
    stale_objects,
)

try:
    from kubernetes import config as kube_config
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError, ResourceNotFoundError
    from urllib3.exceptions import HTTPError
except ImportError:
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None

ARGUMENT_SPEC = {
    "kubeconfig": {"type": "path", "required": True},
    "component": {"type": "str", "required": True},
    "kinds": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "api_version": {"type": "str", "required": True},
            "kind": {"type": "str", "required": True},
            "namespace": {"type": "str"},
        },
    },
    "keep": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "kind": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
            "namespace": {"type": "str"},
        },
    },
}


def connect(module: AnsibleModule) -> Any:
    """A dynamic client for the kubeconfig's cluster; discovery happens once, on first use."""
    kubeconfig = module.params["kubeconfig"]
    try:
        api_client = kube_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return DynamicClient(api_client)  # type: ignore[no-untyped-call]
    except (kube_config.ConfigException, OSError, ValueError, TypeError) as exc:
        module.fail_json(
            msg=f"Cannot use the kubeconfig {kubeconfig}: {exc}. Fetch it again with playbooks/k3s.yml "
            "or point k8s_apply_kubeconfig at a valid one."
        )
    except (DynamicApiError, HTTPError) as exc:
        module.fail_json(msg=unreachable(kubeconfig, exc))


def unreachable(kubeconfig: str, exc: Exception) -> str:
    return (
        f"Cannot reach the Kubernetes API server of {kubeconfig}: {exc}. Check that the cluster is up "
        "(playbooks/k3s.yml) and that this machine can reach its address."
    )


def find_stale(module: AnsibleModule, client: Any) -> tuple[list[dict[str, str]], list[str]]:
    """Every stale object of every kind, and the kinds the server does not serve. Changes nothing."""
    selector = label_selector(module.params["component"])
    stale: list[dict[str, str]] = []
    unserved: list[str] = []
    for entry in module.params["kinds"]:
        kind_id = f"{entry['api_version']}/{entry['kind']}"
        try:
            resource = client.resources.get(api_version=entry["api_version"], kind=entry["kind"])
            listed = resource.get(namespace=entry.get("namespace"), label_selector=selector)
        except (ResourceNotFoundError, NotFoundError):
            # No CRD yet (or removed since the cached discovery): no objects of this kind exist.
            unserved.append(kind_id)
            continue
        except (DynamicApiError, HTTPError) as exc:
            module.fail_json(
                msg=f"Cannot list {kind_id} objects of component {module.params['component']}: {exc}. "
                "Check that the kubeconfig's user may list this kind.",
                deleted=[],
            )
        items = listed.to_dict().get("items") or []
        # Two entries of one kind (a namespace and all of them) must not delete an object twice.
        stale.extend(
            ref for ref in stale_objects(entry["kind"], items, module.params["keep"]) if ref not in stale
        )
    return stale, unserved


def delete(module: AnsibleModule, client: Any, stale: list[dict[str, str]]) -> None:
    api_versions = {entry["kind"]: entry["api_version"] for entry in module.params["kinds"]}
    done: list[dict[str, str]] = []
    for ref in stale:
        resource = client.resources.get(api_version=api_versions[ref["kind"]], kind=ref["kind"])
        try:
            resource.delete(name=ref["name"], namespace=ref.get("namespace"))
        except NotFoundError:
            pass  # gone meanwhile: the desired state is reached all the same
        except (DynamicApiError, HTTPError) as exc:
            module.fail_json(
                msg=f"Cannot delete {ref['kind']} {ref.get('namespace', '')}/{ref['name']}: {exc}. "
                "Check that the kubeconfig's user may delete this kind; run again to finish the prune.",
                deleted=done,
            )
        done.append(ref)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    client = connect(module)
    stale, unserved = find_stale(module, client)
    if stale and not module.check_mode:
        delete(module, client, stale)
    module.exit_json(changed=bool(stale), deleted=stale, unserved_kinds=unserved)


if __name__ == "__main__":
    main()
