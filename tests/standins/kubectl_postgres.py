#!/usr/bin/env python3
"""TEST STAND-IN for ``k3s kubectl`` on a K3s server whose cluster runs LiteLLM's PostgreSQL pod
(k3sllm tests only; it runs no Kubernetes).

playbooks/backup.yml and restore.yml run ``k3s kubectl`` on the first server to reach the database
pod. Tests have no cluster, so the inventory points ``litellm_backup_kubectl`` at this file instead.
Everything behind the pod is real: ``kubectl exec`` runs the command (pg_dump, pg_restore, psql) on
this machine against the test's real PostgreSQL, as the pod's container would against its own
server (the official image trusts local connections of its ``litellm`` superuser).

It answers the subset of kubectl that the playbooks use, as kubectl does, and refuses anything else
so that a playbook change that needs more is noticed:

- ``kubectl -n NS get pods -l SELECTOR [--field-selector=status.phase=Running] -o jsonpath={.items[*].metadata.name}``
- ``kubectl -n NS get deployment NAME [--ignore-not-found] -o jsonpath={.spec.replicas}``
- ``kubectl -n NS scale deployment NAME --replicas=N``
- ``kubectl -n NS wait --for=delete pod -l SELECTOR --timeout=DURATION``
- ``kubectl -n NS rollout status deployment NAME --timeout=DURATION``
- ``kubectl -n NS exec [-i] POD -c CONTAINER -- COMMAND...`` (stdin passed only with ``-i``)

State lives in the JSON file named by ``K3SLLM_STANDIN_KUBECTL_STATE``::

    {"namespace": "k3sllm",
     "pods": {"litellm-postgres-7c9d-x2x": {"labels": {"app.kubernetes.io/name": "litellm-postgres"},
              "containers": ["postgres"], "pghost": "127.0.0.1", "pgport": 15432}},
     "deployments": {"litellm": {"replicas": 1, "labels": {"app.kubernetes.io/name": "litellm"}}},
     "pg_bin_dir": "/usr/lib/postgresql/15/bin",
     "calls": []}

Every call is appended to ``calls`` (argv after ``kubectl``), so tests can check what was run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ALLOWED_EXEC = {"pg_dump", "pg_restore", "psql"}
SHORT_FLAGS = {"-l": "l", "--selector": "l", "-o": "o", "--output": "o", "-c": "c", "--container": "c"}


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(code)


def parse(argv: list[str]) -> tuple[str, list[str], dict[str, str], list[str]]:
    """Split kubectl's arguments into namespace, positional words, flags and the command after ``--``."""
    namespace, words, flags, command = "default", [], {}, []
    if "--" in argv:
        index = argv.index("--")
        argv, command = argv[:index], argv[index + 1 :]
    args = iter(argv)
    for arg in args:
        if arg in ("-n", "--namespace"):
            namespace = next(args)
        elif arg.startswith("--namespace="):
            namespace = arg.split("=", 1)[1]
        elif arg in SHORT_FLAGS:
            flags[SHORT_FLAGS[arg]] = next(args)
        elif arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            flags[name] = value
        elif arg in ("-i", "--stdin", "--ignore-not-found"):
            flags[arg.lstrip("-")] = "true"
        elif arg.startswith("-"):
            fail(f"kubectl stand-in: unsupported flag {arg}")
        else:
            words.append(arg)
    return namespace, words, flags, command


def matches(labels: dict, selector: str) -> bool:
    wanted = dict(part.split("=", 1) for part in selector.split(","))
    return all(labels.get(name) == value for name, value in wanted.items())


def main() -> None:
    state_file = Path(os.environ["K3SLLM_STANDIN_KUBECTL_STATE"])
    state = json.loads(state_file.read_text())
    argv = sys.argv[1:]
    if argv[:1] == ["kubectl"]:  # called as ``k3s kubectl ...``
        argv = argv[1:]
    state["calls"].append(argv)
    state_file.write_text(json.dumps(state, indent=1))
    namespace, words, flags, command = parse(argv)
    if namespace != state["namespace"]:
        if words[:1] == ["get"] and words[1:2] == ["pods"]:
            print("")  # kubectl prints nothing for an empty list in another namespace
            sys.exit(0)
        fail(f'Error from server (NotFound): namespaces "{namespace}" not found')
    verb = words[0] if words else ""

    if verb == "get" and words[1:2] == ["pods"]:
        if flags.get("o") != "jsonpath={.items[*].metadata.name}":
            fail(f"kubectl stand-in: unsupported output {flags.get('o')}")
        phase = flags.get("field-selector")
        if phase not in (None, "status.phase=Running"):
            fail(f"kubectl stand-in: unsupported field selector {phase}")
        names = [name for name, pod in state["pods"].items() if matches(pod["labels"], flags.get("l", ""))]
        print(" ".join(names), end="")
    elif verb == "get" and words[1:2] == ["deployment"]:
        deployment = state["deployments"].get(words[2])
        if deployment is None:
            if "ignore-not-found" in flags:
                sys.exit(0)
            fail(f'Error from server (NotFound): deployments.apps "{words[2]}" not found')
        if flags.get("o") != "jsonpath={.spec.replicas}":
            fail(f"kubectl stand-in: unsupported output {flags.get('o')}")
        print(deployment["replicas"], end="")
    elif verb == "scale" and words[1:2] == ["deployment"]:
        deployment = state["deployments"].get(words[2])
        if deployment is None:
            fail(f'Error from server (NotFound): deployments.apps "{words[2]}" not found')
        deployment["replicas"] = int(flags["replicas"])
        state_file.write_text(json.dumps(state, indent=1))
        print(f"deployment.apps/{words[2]} scaled")
    elif verb == "wait" and flags.get("for") == "delete" and words[1:2] == ["pod"]:
        # Pods of a deployment scaled to 0 are gone at once here.
        running = [
            name
            for name, deployment in state["deployments"].items()
            if deployment["replicas"] > 0 and matches(deployment.get("labels", {}), flags.get("l", ""))
        ]
        if running:
            fail(f"error: timed out waiting for the condition on pods of {', '.join(running)}")
    elif verb == "rollout" and words[1:3] == ["status", "deployment"]:
        deployment = state["deployments"].get(words[3])
        if deployment is None:
            fail(f'Error from server (NotFound): deployments.apps "{words[3]}" not found')
        print(f'deployment "{words[3]}" successfully rolled out')
    elif verb == "exec":
        pod = state["pods"].get(words[1] if len(words) > 1 else "")
        if pod is None:
            fail(f'Error from server (NotFound): pods "{words[1:2]}" not found')
        if flags.get("c") not in pod["containers"]:
            fail(f"error: container {flags.get('c')} is not valid for pod {words[1]}")
        if not command or command[0] not in ALLOWED_EXEC:
            fail(f"kubectl stand-in: exec of {command[:1]} is not supported (only {sorted(ALLOWED_EXEC)})")
        env = {**os.environ, "PGHOST": pod["pghost"], "PGPORT": str(pod["pgport"])}
        binary = str(Path(state["pg_bin_dir"]) / command[0])
        stdin = None if "stdin" in flags or "i" in flags else subprocess.DEVNULL
        sys.exit(subprocess.run([binary, *command[1:]], env=env, stdin=stdin, check=False).returncode)
    else:
        fail(f"kubectl stand-in: unsupported command {' '.join(argv)}")


if __name__ == "__main__":
    main()
