"""Teams and keys from the inventory, through roles/litellm/tasks/tenants.yml and the
k3sllm.platform.litellm_team / litellm_key modules, against the real LiteLLM proxy with its real
PostgreSQL (the litellm_stack fixture): create, re-run with nothing to change, change a budget, block,
purge a limit, delete; check mode reports each change and makes none; a key made by the module
authenticates a chat request; its value is saved once (0600) and never printed.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
from pathlib import Path

import pytest
from k3sllm_testlib import BIN, REPO, ansible_env, changed_count, local_hosts
from k3sllm_testlib.gateway import json_request

pytestmark = pytest.mark.slow

PLAYBOOK = REPO / "tests" / "gateway" / "playbooks" / "tenants.yml"


def changed_items(output: str) -> list[str]:
    """The loop items a run reported as changed (the recap counts tasks, not items)."""
    return re.findall(r"^changed: \[localhost\] => \(item=([^)]+)\)", output, re.MULTILINE)


class Tenants:
    """Runs the tenants step for one inventory folder and reads LiteLLM back through its admin API."""

    def __init__(self, stack, folder: Path):
        self.stack, self.folder = stack, folder
        (folder / "artifacts" / "secrets").mkdir(parents=True)
        (folder / "artifacts" / "secrets" / "litellm-master-key").write_text(stack.master_key + "\n")
        (folder / "hosts.yml").write_text(json.dumps(local_hosts()))
        status, models = json_request(f"{stack.url}/v1/models", stack.master_key)
        assert status == 200, models
        self.model = models["data"][0]["id"]

    def run(self, teams: list, keys: list, *args: str) -> tuple[int, str]:
        settings = self.folder.parent / "tenants.json"  # not in the inventory folder: Ansible would read it
        settings.write_text(
            json.dumps({"litellm_teams": teams, "litellm_keys": keys, "litellm_admin_url": self.stack.url})
        )
        result = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(self.folder),
                str(PLAYBOOK),
                "-e",
                f"@{settings}",
                *args,
            ],
            cwd=REPO,
            env=ansible_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        return result.returncode, result.stdout + result.stderr

    def key(self, alias: str) -> dict | None:
        status, answer = json_request(
            f"{self.stack.url}/key/list?key_alias={alias}&return_full_object=true", self.stack.master_key
        )
        assert status == 200, answer
        keys = answer["keys"]
        assert len(keys) <= 1
        return keys[0] if keys else None

    def key_info(self, value: str) -> dict:
        token = hashlib.sha256(value.encode()).hexdigest()
        status, answer = json_request(f"{self.stack.url}/key/info?key={token}", self.stack.master_key)
        assert status == 200, answer
        return answer["info"]

    def team(self, alias: str) -> dict | None:
        status, teams = json_request(f"{self.stack.url}/team/list", self.stack.master_key)
        assert status == 200, teams
        found = [team for team in teams if team["team_alias"] == alias]
        assert len(found) <= 1
        return found[0] if found else None

    def chat(self, value: str) -> int:
        status, _ = json_request(
            f"{self.stack.url}/v1/chat/completions",
            value,
            "POST",
            {"model": self.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        )
        return status

    def saved(self, alias: str) -> Path:
        return self.folder / "artifacts" / "keys" / alias


def test_teams_and_keys_lifecycle(litellm_stack, tmp_path):
    tenants = Tenants(litellm_stack, tmp_path / "inventory")
    model = tenants.model
    research = {
        "alias": "research",
        "models": [model],
        "max_budget": 50,
        "budget_duration": "30d",
        "rpm_limit": 100,
    }
    alice = {
        "alias": "alice-laptop",
        "team": "research",
        "max_budget": 10,
        "budget_duration": "30d",
        "rpm_limit": 60,
    }
    ci = {"alias": "ci", "models": [model], "max_budget": 1}

    # 1. Create, with -v: the values land in their files and nowhere in the output.
    code, created = tenants.run([research], [alice, ci], "-v")
    assert code == 0, created[-4000:]
    assert sorted(changed_items(created)) == ["alice-laptop", "ci", "research"], created[-4000:]
    team = tenants.team("research")
    assert team["models"] == [model] and team["max_budget"] == 50 and team["rpm_limit"] == 100
    keys_dir = tenants.saved("ci").parent
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    values = {}
    for alias in ("alice-laptop", "ci"):
        path = tenants.saved(alias)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        values[alias] = path.read_text().strip()
        assert values[alias].startswith("sk-")
        assert values[alias] not in created, f"the value of {alias} was printed"
    assert litellm_stack.master_key not in created
    info = tenants.key_info(values["alice-laptop"])
    assert info["key_alias"] == "alice-laptop" and info["team_id"] == team["team_id"]
    assert info["max_budget"] == 10 and info["budget_duration"] == "30d" and info["rpm_limit"] == 60
    # A key made by the module authenticates a real request through LiteLLM.
    assert tenants.chat(values["alice-laptop"]) == 200
    assert tenants.chat("sk-not-a-key-of-this-proxy") in (401, 403)

    # 2. The same inventory again: nothing changes, no file is rewritten.
    mtimes = {alias: tenants.saved(alias).stat().st_mtime_ns for alias in values}
    code, again = tenants.run([research], [alice, ci])
    assert code == 0, again[-4000:]
    assert changed_count(again) == 0, again[-4000:]

    # 3. Check mode with changes: a budget raised and a limit dropped (purged), a key blocked, a new key,
    #    a key deleted. It reports them and LiteLLM and the files stay as they are.
    alice_changed = {key: value for key, value in alice.items() if key != "rpm_limit"} | {
        "max_budget": 20,
        "blocked": True,
    }
    bob = {"alias": "bob", "team": "research", "tpm_limit": 5000}
    ci_gone = {"alias": "ci", "state": "absent"}
    code, checked = tenants.run([research], [alice_changed, bob, ci_gone], "--check", "--diff")
    assert code == 0, checked[-4000:]
    assert sorted(changed_items(checked)) == ["alice-laptop", "bob", "ci"], checked[-4000:]
    assert "+    max_budget: 20.0" in checked, "--diff shows the change"
    before = tenants.key_info(values["alice-laptop"])
    assert before["max_budget"] == 10 and before["rpm_limit"] == 60 and not before["blocked"]
    assert tenants.key("bob") is None and not tenants.saved("bob").exists()
    assert tenants.key("ci") is not None and tenants.saved("ci").exists()

    # 4. The same for real.
    code, changed = tenants.run([research], [alice_changed, bob, ci_gone])
    assert code == 0, changed[-4000:]
    after = tenants.key_info(values["alice-laptop"])
    assert after["max_budget"] == 20 and after["rpm_limit"] is None and after["blocked"] is True
    assert after["spend"] == before["spend"], "an update must keep the key's spend"
    assert tenants.chat(values["alice-laptop"]) in (401, 403), "a blocked key must be refused"
    assert tenants.key("ci") is None and not tenants.saved("ci").exists()
    assert tenants.chat(values["ci"]) in (401, 403), "a deleted key must be refused"
    bob_value = tenants.saved("bob").read_text().strip()
    assert tenants.key_info(bob_value)["tpm_limit"] == 5000 and bob_value not in changed
    # Existing keys keep their files as they were.
    assert tenants.saved("alice-laptop").stat().st_mtime_ns == mtimes["alice-laptop"]
    assert tenants.saved("alice-laptop").read_text().strip() == values["alice-laptop"]

    code, again = tenants.run([research], [alice_changed, bob, ci_gone])
    assert code == 0, again[-4000:]
    assert changed_count(again) == 0, again[-4000:]

    # 5. Unblock: the same key works again (its value never changed).
    alice_open = alice_changed | {"blocked": False}
    code, unblocked = tenants.run([research], [alice_open, bob, ci_gone])
    assert code == 0 and changed_count(unblocked) == 1, unblocked[-4000:]
    assert tenants.chat(values["alice-laptop"]) == 200

    # 6. Delete the team with its keys: check mode first, then for real.
    gone = [{"alias": "research", "state": "absent"}]
    keys_gone = [{"alias": "alice-laptop", "state": "absent"}, {"alias": "bob", "state": "absent"}]
    code, checked = tenants.run(gone, keys_gone, "--check")
    assert code == 0, checked[-4000:]
    assert sorted(changed_items(checked)) == ["alice-laptop", "bob", "research"], checked[-4000:]
    assert tenants.team("research") is not None and tenants.key("bob") is not None
    code, deleted = tenants.run(gone, keys_gone)
    assert code == 0, deleted[-4000:]
    assert (
        tenants.team("research") is None
        and tenants.key("alice-laptop") is None
        and tenants.key("bob") is None
    )
    assert not tenants.saved("alice-laptop").exists() and not tenants.saved("bob").exists()
    code, again = tenants.run(gone, keys_gone)
    assert code == 0 and changed_count(again) == 0, again[-4000:]


def test_bad_entries_fail_before_any_change(litellm_stack, tmp_path):
    tenants = Tenants(litellm_stack, tmp_path / "inventory")
    code, output = tenants.run(
        [{"alias": "ops", "max_budget": 5, "budget_duration": "monthly"}],
        [{"alias": "../../etc/x"}, {"alias": "eve", "max_budet": 3}],
    )
    assert code != 0
    assert "budget_duration 'monthly' is not a LiteLLM duration" in output
    assert "the alias may hold letters, digits" in output
    assert "unknown fields max_budet" in output
    assert tenants.team("ops") is None and tenants.key("eve") is None


def test_unreachable_gateway_in_check_mode_reports_instead_of_failing(tmp_path):
    class NoGateway:
        url = "http://127.0.0.1:9"
        master_key = "sk-" + "x" * 20

    folder = tmp_path / "inventory"
    tenants = Tenants.__new__(Tenants)
    tenants.stack, tenants.folder, tenants.model = NoGateway, folder, "m"
    (folder / "artifacts" / "secrets").mkdir(parents=True)
    (folder / "artifacts" / "secrets" / "litellm-master-key").write_text(NoGateway.master_key)
    (folder / "hosts.yml").write_text(
        json.dumps(
            {"all": {"children": {"k3s_server": {"hosts": {"localhost": {"ansible_connection": "local"}}}}}}
        )
    )
    code, output = tenants.run([{"alias": "research"}], [{"alias": "alice", "team": "research"}], "--check")
    assert code == 0, output[-4000:]
    assert "does not answer at http://127.0.0.1:9 yet" in output and "teams research" in output
    assert changed_count(output) == 1
    code, output = tenants.run([{"alias": "research"}], [], "-e", "litellm_admin_wait_timeout=1")
    assert code != 0
    assert "LiteLLM did not answer at http://127.0.0.1:9/health/readiness" in output
    assert "litellm_admin_url" in output
