"""playbooks/backup.yml and restore.yml: LiteLLM's keys and their spend survive a dump, a restore into an
EMPTY database and a LiteLLM started against it.

Real parts: LiteLLM and its PostgreSQL (the litellm_stack fixture), pg_dump/pg_restore/psql, a second
PostgreSQL cluster as the empty target, the playbooks as users run them. The one stand-in is kubectl on
the K3s server (tests/standins/kubectl_postgres.py): its ``exec`` runs the playbook's command on this
machine against the PostgreSQL the test points the "pod" at.
"""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from k3sllm_testlib import BIN, REPO, ansible_env, changed_count, local_hosts
from k3sllm_testlib.gateway import Postgres, json_request

pytestmark = pytest.mark.slow

STANDIN = REPO / "tests" / "standins" / "kubectl_postgres.py"
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]  # Debian's PostgreSQL, as the stack's
POD = "litellm-postgres-5d8f7c9b6-x7k2p"


def psql(dsn: str, sql: str) -> str:
    result = subprocess.run(
        ["psql", dsn, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture
def empty_postgres():
    """A new PostgreSQL cluster with an empty database litellm owned by litellm, as a fresh install's
    (or a rebuilt volume's) database pod starts."""
    pg = Postgres.start()
    try:
        yield pg.dsn
    finally:
        pg.stop()


class Cluster:
    """The inventory and the kubectl stand-in's state: one database "pod", one LiteLLM Deployment."""

    def __init__(self, folder: Path, dsn: str):
        self.folder = folder
        self.state = folder / "kubectl-state.json"
        folder.mkdir(parents=True)
        # The test runs as root without sudo; the playbooks' become is for real hosts.
        (folder / "hosts.yml").write_text(json.dumps(local_hosts(ansible_become=False)))
        (folder / "group_vars" / "all").mkdir(parents=True)
        (folder / "group_vars" / "all" / "main.yml").write_text(
            json.dumps(
                {
                    "litellm_backup_kubectl": [sys.executable, str(STANDIN), "kubectl"],
                    "litellm_backup_host_dir": str(folder / "server-backups"),
                }
            )
        )
        self.point_at(dsn)

    def point_at(self, dsn: str) -> None:
        url = urlparse(dsn)
        self.state.write_text(
            json.dumps(
                {
                    "namespace": "k3sllm",
                    "pods": {
                        POD: {
                            "labels": {"app.kubernetes.io/name": "litellm-postgres"},
                            "containers": ["postgres"],
                            "pghost": url.hostname,
                            "pgport": url.port,
                        }
                    },
                    "deployments": {
                        "litellm": {"replicas": 1, "labels": {"app.kubernetes.io/name": "litellm"}}
                    },
                    "pg_bin_dir": str(PG_BIN),
                    "calls": [],
                }
            )
        )

    def calls(self) -> list[list[str]]:
        return json.loads(self.state.read_text())["calls"]

    def run(self, playbook: str, *args: str) -> tuple[int, str]:
        result = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(self.folder), str(REPO / playbook), *args],
            cwd=REPO,
            env=ansible_env(K3SLLM_STANDIN_KUBECTL_STATE=str(self.state)),
            capture_output=True,
            text=True,
            timeout=300,
        )
        return result.returncode, result.stdout + result.stderr


def test_keys_and_spend_survive_backup_and_restore_into_an_empty_database(
    litellm_stack, empty_postgres, tmp_path
):
    stack = litellm_stack
    status, models = json_request(f"{stack.url}/v1/models", stack.master_key)
    assert status == 200, models
    model = models["data"][0]["id"]
    keys = {}
    for alias in ("backup-alice", "backup-bob"):
        status, answer = json_request(
            f"{stack.url}/key/generate", stack.master_key, "POST", {"key_alias": alias, "max_budget": 5}
        )
        assert status == 200, answer
        keys[alias] = answer["key"]
    for _ in range(2):
        status, answer = json_request(
            f"{stack.url}/v1/chat/completions",
            keys["backup-alice"],
            "POST",
            {"model": model, "messages": [{"role": "user", "content": "count to three"}], "max_tokens": 8},
        )
        assert status == 200, answer

    # LiteLLM writes spend to PostgreSQL in batches: wait until it is there.
    hashes = {alias: hashlib.sha256(value.encode()).hexdigest() for alias, value in keys.items()}
    deadline = time.monotonic() + 150
    spend_sql = f"""SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = '{hashes["backup-alice"]}'"""
    while float(psql(stack.dsn, spend_sql) or 0) == 0:
        assert time.monotonic() < deadline, "LiteLLM never recorded the spend in PostgreSQL"
        time.sleep(2)
    spend = float(psql(stack.dsn, spend_sql))
    logs = int(
        psql(
            stack.dsn,
            f"""SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = '{hashes["backup-alice"]}'""",
        )
    )

    # Backup.
    cluster = Cluster(tmp_path / "inventory", stack.dsn)
    code, output = cluster.run("playbooks/backup.yml")
    assert code == 0, output[-4000:]
    dumps = list((cluster.folder / "artifacts" / "backups").glob("litellm-*.dump"))
    assert len(dumps) == 1, dumps
    dump = dumps[0]
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert stat.S_IMODE(dump.parent.stat().st_mode) == 0o700
    assert list((cluster.folder / "server-backups").iterdir()) == [], "the server's copy must be removed"
    assert dump.read_bytes()[:5] == b"PGDMP", "not pg_dump's custom format"

    # Restore refuses the (non-empty) live database without confirmation, and changes nothing.
    code, refused = cluster.run("playbooks/restore.yml", "-e", f"litellm_restore_file={dump}")
    assert code != 0
    assert "Database litellm is not empty: it holds" in refused and "litellm_restore_confirm=true" in refused
    assert not any(call[2:3] == ["scale"] for call in cluster.calls())

    # Restore into an EMPTY database: no confirmation needed; LiteLLM is stopped and started around it.
    cluster.point_at(empty_postgres)
    code, restored = cluster.run("playbooks/restore.yml", "-e", f"litellm_restore_file={dump}")
    assert code == 0, restored[-4000:]
    assert changed_count(restored) > 0
    scales = [call[-1] for call in cluster.calls() if call[2:3] == ["scale"]]
    assert scales == ["--replicas=0", "--replicas=1"]
    assert float(psql(empty_postgres, spend_sql)) == pytest.approx(spend)
    assert int(psql(empty_postgres, """SELECT count(*) FROM "LiteLLM_SpendLogs" """)) >= logs

    # LiteLLM started against the restored database: the keys authenticate, their spend survived.
    with stack.started_against(empty_postgres) as restarted:
        for alias in keys:
            status, info = json_request(f"{restarted.url}/key/info?key={hashes[alias]}", restarted.master_key)
            assert status == 200, info
            assert info["info"]["key_alias"] == alias
        assert json_request(f"{restarted.url}/key/info?key={hashes['backup-alice']}", restarted.master_key)[
            1
        ]["info"]["spend"] == pytest.approx(spend)
        status, answer = json_request(
            f"{restarted.url}/v1/chat/completions",
            keys["backup-bob"],
            "POST",
            {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        )
        assert status == 200, answer

    # A second restore into the now non-empty database needs the confirmation, then works.
    code, again = cluster.run(
        "playbooks/restore.yml", "-e", f"litellm_restore_file={dump}", "-e", "litellm_restore_confirm=true"
    )
    assert code == 0, again[-4000:]


def test_restore_refuses_a_missing_or_foreign_file(empty_postgres, tmp_path):
    cluster = Cluster(tmp_path / "inventory", empty_postgres)
    code, output = cluster.run("playbooks/restore.yml")
    assert code != 0 and "Name the dump to restore" in output
    code, output = cluster.run("playbooks/restore.yml", "-e", f"litellm_restore_file={tmp_path}/nope.dump")
    assert code != 0 and "is not a file on the controller" in output
    foreign = tmp_path / "notes.dump"
    foreign.write_text("not a dump\n")
    code, output = cluster.run("playbooks/restore.yml", "-e", f"litellm_restore_file={foreign}")
    assert code != 0 and "is not a complete pg_dump archive of LiteLLM's database" in output
    assert "Nothing was changed" in output
    # Nothing was stopped for a file that is not a dump.
    assert not any(call[2:3] == ["scale"] for call in cluster.calls())


def test_check_mode_changes_nothing_and_an_empty_database_is_not_backed_up(empty_postgres, tmp_path):
    cluster = Cluster(tmp_path / "inventory", empty_postgres)
    code, output = cluster.run("playbooks/backup.yml", "--check")
    assert code == 0, output[-4000:]
    assert changed_count(output) == 1 and "A real run dumps database litellm" in output
    assert not (cluster.folder / "artifacts").exists()
    assert not any("pg_dump" in call for call in cluster.calls())
    # A database LiteLLM never started on has none of its tables: nothing is fetched.
    code, output = cluster.run("playbooks/backup.yml")
    assert code != 0 and "has no LiteLLM_VerificationToken table" in output
    assert not list((cluster.folder / "artifacts" / "backups").glob("*.dump"))
    assert list((cluster.folder / "server-backups").iterdir()) == []
