"""litellm_key's decisions that need no real proxy: where the one-time value may go, check mode, the
save file's life cycle. The module against the real LiteLLM is tested in tests/gateway/test_tenants.py.

The proxy here is a small in-memory recorder of the admin routes the module calls, answering in
LiteLLM 1.108's shapes.
"""

from __future__ import annotations

import hashlib
import json
import stat
from urllib.parse import parse_qs, urlparse

import pytest

from ansible_collections.k3sllm.platform.plugins.modules import litellm_key
from ansible_collections.k3sllm.platform.tests.unit.json_server import JsonHandler, serving


class AdminRecorder(JsonHandler):
    keys: dict  # token hash -> key row
    calls: list

    def do_GET(self):
        url = urlparse(self.path)
        self.calls.append(("GET", url.path))
        alias = parse_qs(url.query).get("key_alias", [None])[0]
        if url.path == "/key/list":
            self.send_json({"keys": [row for row in self.keys.values() if row["key_alias"] == alias]})
        elif url.path == "/team/list":
            self.send_json([{"team_alias": "research", "team_id": "t-1", "keys": []}])
        else:
            self.send_json({"detail": "Not Found"}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(("POST", self.path))
        if self.path == "/key/generate":
            value = f"sk-test{len(self.keys):04d}"
            token = hashlib.sha256(value.encode()).hexdigest()
            self.keys[token] = {"token": token, "models": [], "metadata": {}, **body}
            self.send_json({**body, "key": value})
        elif self.path == "/key/delete":
            for token in body["keys"]:
                self.keys.pop(token)
            self.send_json({"deleted_keys": body["keys"]})
        elif self.path == "/key/update":
            self.keys[body["key"]].update({k: v for k, v in body.items() if k != "key"})
            self.send_json(self.keys[body["key"]])
        else:
            self.send_json({"detail": "Not Found"}, 404)


@pytest.fixture
def proxy():
    AdminRecorder.keys, AdminRecorder.calls = {}, []
    with serving(AdminRecorder) as server:
        yield AdminRecorder, f"http://127.0.0.1:{server.server_port}"


def writes(recorder) -> list:
    return [call for call in recorder.calls if call[0] == "POST"]


def test_creating_a_key_whose_value_would_be_lost_fails_before_any_change(proxy, run_module):
    recorder, url = proxy
    result = run_module(litellm_key.main, {"url": url, "master_key": "sk-m", "alias": "a", "max_budget": 1.0})
    assert result["failed"] is True
    assert "would lose its value" in result["msg"] and "save_path" in result["msg"]
    assert writes(recorder) == []


def test_value_is_saved_0600_in_a_0700_folder_and_returned_only_to_no_log(tmp_path, proxy, run_module):
    _recorder, url = proxy
    path = tmp_path / "artifacts" / "keys" / "alice"
    args = {"url": url, "master_key": "sk-m", "alias": "alice", "max_budget": 2.5, "save_path": str(path)}
    result = run_module(litellm_key.main, args)
    assert result["changed"] is True and result["created"] is True
    assert "key" not in result, "the value must not be returned to a task that logs its result"
    value = path.read_text().strip()
    assert value.startswith("sk-") and value not in json.dumps(result)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert result["key_hash"] == hashlib.sha256(value.encode()).hexdigest()

    # A re-run finds the key by its alias: nothing changes, the file is not rewritten.
    before = path.stat().st_mtime_ns
    again = run_module(litellm_key.main, args)
    assert again["changed"] is False and again["changes"] == {}
    assert path.stat().st_mtime_ns == before and path.read_text().strip() == value

    # With no_log the value comes back once, on creation.
    created = run_module(
        litellm_key.main, {**args, "alias": "bob", "save_path": None, "_ansible_no_log": True}
    )
    assert created["key"].startswith("sk-")
    assert "key" not in run_module(
        litellm_key.main, {**args, "alias": "bob", "save_path": None, "_ansible_no_log": True}
    )


def test_check_mode_reports_creation_and_writes_nothing(tmp_path, proxy, run_module):
    recorder, url = proxy
    path = tmp_path / "keys" / "alice"
    result = run_module(
        litellm_key.main,
        {
            "url": url,
            "master_key": "sk-m",
            "alias": "alice",
            "rpm_limit": 5,
            "save_path": str(path),
            "_ansible_check_mode": True,
        },
    )
    assert result["changed"] is True and result["created"] is True
    assert result["changes"]["rpm_limit"] == {"before": None, "after": 5}
    assert writes(recorder) == [] and not path.parent.exists()


def test_a_value_that_cannot_be_saved_takes_the_new_key_back(tmp_path, proxy, run_module, monkeypatch):
    recorder, url = proxy

    def disk_full(path, value):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(litellm_key, "write_secret", disk_full)
    result = run_module(
        litellm_key.main,
        {"url": url, "master_key": "sk-m", "alias": "alice", "save_path": str(tmp_path / "alice")},
    )
    assert result["failed"] is True
    assert "No space left on device" in result["msg"] and "deleted again" in result["msg"]
    assert [path for _method, path in writes(recorder)] == ["/key/generate", "/key/delete"]
    assert recorder.keys == {}


def test_save_path_that_is_a_folder_is_refused_before_creation(tmp_path, proxy, run_module):
    recorder, url = proxy
    result = run_module(
        litellm_key.main, {"url": url, "master_key": "sk-m", "alias": "a", "save_path": str(tmp_path)}
    )
    assert result["failed"] is True and "is a folder" in result["msg"]
    assert writes(recorder) == []


def test_absent_deletes_the_key_and_its_dead_value(tmp_path, proxy, run_module):
    recorder, url = proxy
    path = tmp_path / "alice"
    args = {"url": url, "master_key": "sk-m", "alias": "alice", "save_path": str(path)}
    run_module(litellm_key.main, args)
    checked = run_module(litellm_key.main, {**args, "state": "absent", "_ansible_check_mode": True})
    assert checked["changed"] is True and path.exists() and len(recorder.keys) == 1
    gone = run_module(litellm_key.main, {**args, "state": "absent"})
    assert gone["changed"] is True and not path.exists() and recorder.keys == {}
    assert run_module(litellm_key.main, {**args, "state": "absent"})["changed"] is False


def test_loose_file_mode_is_tightened(tmp_path, proxy, run_module):
    _recorder, url = proxy
    path = tmp_path / "alice"
    args = {"url": url, "master_key": "sk-m", "alias": "alice", "save_path": str(path)}
    run_module(litellm_key.main, args)
    path.chmod(0o644)
    assert run_module(litellm_key.main, args)["changed"] is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unknown_team_is_a_clear_failure(proxy, run_module):
    recorder, url = proxy
    result = run_module(
        litellm_key.main,
        {"url": url, "master_key": "sk-m", "alias": "a", "team": "nope", "_ansible_no_log": True},
    )
    assert result["failed"] is True and "team 'nope' does not exist" in result["msg"]
    assert writes(recorder) == []
