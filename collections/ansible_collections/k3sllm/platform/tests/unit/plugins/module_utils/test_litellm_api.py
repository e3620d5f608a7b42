"""litellm_api: desired settings vs what LiteLLM holds -> the changes; input checks; error messages."""

from __future__ import annotations

import json
from http.server import HTTPServer

import pytest

from ansible_collections.k3sllm.platform.plugins.module_utils.litellm_api import (
    TEAM_SETTINGS,
    LiteLLMAdmin,
    LiteLLMError,
    creation_settings,
    desired_settings,
    diff_settings,
    plan_tenants,
    planned_changes,
    problems,
    update_settings,
)
from ansible_collections.k3sllm.platform.tests.unit.json_server import JsonHandler, serving

# A key as GET /key/list?return_full_object=true returns it (LiteLLM 1.108), trimmed to what matters.
STORED_KEY = {
    "token": "9f" * 32,
    "key_alias": "alice",
    "models": ["qwen", "llama"],
    "max_budget": 10.0,
    "budget_duration": "30d",
    "rpm_limit": 60,
    "tpm_limit": None,
    "team_id": "team-1",
    "blocked": None,
    "metadata": {"owner": "alice", "ui_note": "kept"},
    "spend": 1.25,
}


def test_equal_settings_in_another_form_are_no_change():
    desired = desired_settings(
        {
            "models": ["llama", "qwen", "qwen"],
            "max_budget": 10,
            "budget_duration": "30d",
            "rpm_limit": 60,
            "team_id": "team-1",
            "blocked": False,
            "metadata": {"owner": "alice"},
        }
    )
    assert diff_settings(desired, STORED_KEY) == {}


def test_each_differing_setting_is_reported_with_before_and_after():
    desired = desired_settings(
        {"models": ["qwen"], "max_budget": 20.5, "tpm_limit": 1000, "blocked": True, "team_id": "team-2"}
    )
    changes = diff_settings(desired, STORED_KEY)
    assert changes == {
        "models": {"before": ["llama", "qwen"], "after": ["qwen"]},
        "max_budget": {"before": 10.0, "after": 20.5},
        "tpm_limit": {"before": None, "after": 1000},
        "team_id": {"before": "team-1", "after": "team-2"},
        "blocked": {"before": False, "after": True},
    }
    # blocked goes through /key/block, everything else through one /key/update.
    assert update_settings(changes) == {
        "models": ["qwen"],
        "max_budget": 20.5,
        "tpm_limit": 1000,
        "team_id": "team-2",
    }


def test_planned_settings_are_the_current_ones_with_the_changes_applied():
    changes, after = planned_changes(
        desired_settings({"max_budget": 20, "metadata": {"owner": "bob"}}), STORED_KEY
    )
    assert set(changes) == {"max_budget", "metadata"}
    assert after["max_budget"] == 20.0 and after["rpm_limit"] == 60 and after["team_id"] == "team-1"
    assert after["metadata"] == {"owner": "bob", "ui_note": "kept"}
    # Not created yet: every desired setting is a change from nothing, the rest stay at their defaults.
    changes, after = planned_changes(
        desired_settings({"rpm_limit": 5}, fields=TEAM_SETTINGS), None, TEAM_SETTINGS
    )
    assert changes == {"rpm_limit": {"before": None, "after": 5}}
    assert set(after) == set(TEAM_SETTINGS) and after["rpm_limit"] == 5 and after["models"] == []


def test_settings_left_out_are_not_managed_unless_purged():
    assert diff_settings(desired_settings({"rpm_limit": 60}), STORED_KEY) == {}
    purged = diff_settings(desired_settings({"rpm_limit": 60}, purge=True), STORED_KEY)
    assert purged == {
        "models": {"before": ["llama", "qwen"], "after": []},
        "max_budget": {"before": 10.0, "after": None},
        "budget_duration": {"before": "30d", "after": None},
        "team_id": {"before": "team-1", "after": None},
    }
    # Cleared values are sent as such: null clears a limit in LiteLLM's update, [] means all models.
    assert update_settings(purged)["max_budget"] is None


def test_metadata_compares_only_given_entries_and_merges():
    changes = diff_settings(desired_settings({"metadata": {"owner": "bob"}}), STORED_KEY)
    assert changes == {
        "metadata": {
            "before": {"owner": "alice", "ui_note": "kept"},
            "after": {"owner": "bob", "ui_note": "kept"},
        }
    }
    # purge never touches metadata (LiteLLM and its UI keep their own entries there)
    assert "metadata" not in desired_settings({}, purge=True)


def test_budget_float_noise_is_no_change():
    assert diff_settings(desired_settings({"max_budget": 0.1 + 0.2}), {"max_budget": 0.3}) == {}
    assert diff_settings(desired_settings({"max_budget": 0.3001}), {"max_budget": 0.3}) != {}


def test_team_settings_have_no_team_id_to_purge():
    desired = desired_settings({}, purge=True, fields=TEAM_SETTINGS)
    assert "team_id" not in desired
    assert desired == {
        "models": [],
        "max_budget": None,
        "budget_duration": None,
        "rpm_limit": None,
        "tpm_limit": None,
        "blocked": False,
    }


def test_creation_sends_only_what_is_set():
    desired = desired_settings({"max_budget": 5, "blocked": False}, purge=True)
    assert creation_settings(desired) == {"max_budget": 5.0, "blocked": False}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"max_budget": -1.0}, "max_budget must be a number >= 0"),
        ({"max_budget": float("nan")}, "max_budget must be a number >= 0"),
        ({"rpm_limit": -5}, "rpm_limit must be >= 0"),
        ({"budget_duration": "monthly"}, "budget_duration 'monthly' is not a LiteLLM duration"),
        ({"budget_duration": "0d"}, "is not a LiteLLM duration"),
        ({"models": ["qwen", ""]}, "models must be a list of model names"),
    ],
)
def test_bad_input_is_named(params, fragment):
    assert any(fragment in problem for problem in problems(params))


def test_good_input_passes():
    assert problems({"max_budget": 0.0, "rpm_limit": 0, "budget_duration": "1mo", "models": ["a"]}) == []


class _Recorder(JsonHandler):
    """Answers like LiteLLM does on errors; records what it was sent."""

    answers: dict = {}
    seen: list = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        status, payload = self.answers.get(self.path.split("?")[0], (404, {"detail": "Not Found"}))
        self.send_json(payload, status)

    do_GET = do_POST = _answer


@pytest.fixture
def recorder():
    _Recorder.seen = []
    with serving(_Recorder, HTTPServer) as server:
        yield server, _Recorder


def test_refused_master_key_is_explained_without_the_key(recorder):
    server, handler = recorder
    handler.answers = {
        "/team/list": (
            401,
            {"error": {"message": "Authentication Error, Invalid proxy server token passed."}},
        )
    }
    api = LiteLLMAdmin(f"http://127.0.0.1:{server.server_port}/", "sk-secret-master")
    with pytest.raises(LiteLLMError) as caught:
        api.find_team("research")
    assert caught.value.status == 401
    assert "refused the master key" in str(caught.value)
    assert "Invalid proxy server token" in str(caught.value)
    assert "sk-secret-master" not in str(caught.value)
    assert handler.seen[0][2] == "Bearer sk-secret-master"


def test_litellm_error_message_is_passed_on(recorder):
    server, handler = recorder
    handler.answers = {
        "/key/generate": (400, {"error": {"message": "Key with alias 'a' already exists.", "code": "400"}})
    }
    api = LiteLLMAdmin(f"http://127.0.0.1:{server.server_port}", "sk-m")
    with pytest.raises(
        LiteLLMError, match="answered 400 to POST /key/generate: Key with alias 'a' already exists"
    ):
        api.generate_key("a", {"max_budget": 1.0})
    assert handler.seen[0][3] == {"key_alias": "a", "max_budget": 1.0}


def test_duplicate_team_aliases_are_refused_with_their_ids(recorder):
    server, handler = recorder
    handler.answers = {
        "/team/list": (200, [{"team_alias": "x", "team_id": "t1"}, {"team_alias": "x", "team_id": "t2"}])
    }
    api = LiteLLMAdmin(f"http://127.0.0.1:{server.server_port}", "sk-m")
    with pytest.raises(LiteLLMError, match=r"2 LiteLLM teams are named 'x' \(team ids t1, t2\)"):
        api.find_team("x")


def test_unreachable_proxy_names_the_url():
    api = LiteLLMAdmin("http://127.0.0.1:9", "sk-m", timeout=2)
    with pytest.raises(LiteLLMError, match=r"Cannot reach LiteLLM at http://127.0.0.1:9 .*Check url"):
        api.find_key("a")


def test_tenants_plan_fills_defaults_and_orders_deletions_last():
    plan = plan_tenants(
        [
            {"alias": "research", "max_budget": 100, "budget_duration": "30d"},
            {"alias": "old", "state": "absent"},
        ],
        [
            {"alias": "alice", "team": "research", "rpm_limit": 60},
            {"alias": "ci", "save": False, "state": "absent"},
        ],
    )
    assert plan["problems"] == []
    assert plan["team_entries"] == [
        {"alias": "research", "state": "present", "max_budget": 100, "budget_duration": "30d"}
    ]
    assert plan["teams_absent"] == ["old"]
    assert plan["key_entries"] == [
        {"alias": "alice", "state": "present", "save": True, "team": "research", "rpm_limit": 60},
        {"alias": "ci", "state": "absent", "save": False},
    ]


@pytest.mark.parametrize(
    ("teams", "keys", "fragment"),
    [
        ([], [{"alias": "../etc/passwd"}], "the alias may hold letters, digits"),
        (
            [],
            [{"alias": "a"}, {"alias": "a"}],
            "litellm_keys entry 'a' appears twice; each alias names one key",
        ),
        ([{"alias": "t", "max_budet": 5}], [], "litellm_teams entry 't': unknown fields max_budet"),
        ([], [{"alias": "a", "state": "gone"}], "state must be present or absent, not 'gone'"),
        ([], [{"alias": "a", "save": "yes please"}], "save must be true or false"),
        ([], [{"alias": "a", "max_budget": "lots"}], "max_budget, rpm_limit and tpm_limit must be numbers"),
        (
            [],
            [{"alias": "a", "budget_duration": "monthly"}],
            "litellm_keys entry 'a': budget_duration 'monthly'",
        ),
        ([], [{"alias": "a", "models": "qwen"}], "models must be a list of model names"),
        ([{"max_budget": 1}], [], "litellm_teams[0] needs an alias"),
        (
            [{"alias": "t", "state": "absent"}],
            [{"alias": "k", "team": "t"}],
            "litellm_keys entry 'k' names team 't', which litellm_teams deletes",
        ),
    ],
)
def test_tenants_plan_names_each_problem(teams, keys, fragment):
    found = plan_tenants(teams, keys)["problems"]
    assert any(fragment in problem for problem in found), found
