"""LiteLLM's admin API for teams and virtual keys, and the pure logic that compares settings.

The HTTP side goes through Ansible's ``open_url`` (proxies, CA bundles, client certificates as
Ansible users configure them). The comparison side is plain functions (desired settings vs the
object LiteLLM returns -> the fields that differ), unit-tested without a server.

Shapes follow LiteLLM 1.108 (``/team/new|update|delete|list|block|unblock``,
``/key/generate|update|delete|list|block|unblock``). The alias is the identity of a team or key:
LiteLLM itself refuses a second key with the same ``key_alias``; team aliases are not unique in
LiteLLM, so a duplicate is reported instead of guessed at.
"""

from __future__ import annotations

import json
import math
import re
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

from ansible.module_utils.urls import open_url

if TYPE_CHECKING:  # annotations only: module_utils also run on managed hosts' older Pythons
    from ansible.module_utils.basic import AnsibleModule

    # A LiteLLM team or key as its API returns it (JSON).
    Record = dict[str, Any]

# The settings the modules manage, in the order they are reported (a team has no team_id setting).
SETTINGS = (
    "models",
    "max_budget",
    "budget_duration",
    "rpm_limit",
    "tpm_limit",
    "team_id",
    "blocked",
    "metadata",
)
TEAM_SETTINGS = tuple(field for field in SETTINGS if field != "team_id")

# What a setting is when nobody set it: all models, no budget, no limit, no team, not blocked.
# ``purge`` makes the modules bring every setting the task leaves out back to this.
CLEARED: dict[str, Any] = {
    "models": [],
    "max_budget": None,
    "budget_duration": None,
    "rpm_limit": None,
    "tpm_limit": None,
    "team_id": None,
    "blocked": False,
}

# LiteLLM's duration syntax (litellm_core_utils.duration_parser): seconds to months.
DURATION = re.compile(r"^[1-9][0-9]*(s|m|h|d|w|mo)$")

# Common options of both modules (the litellm_admin doc fragment documents them).
CONNECTION_SPEC = {
    "url": {"type": "str", "required": True},
    "master_key": {"type": "str", "required": True, "no_log": True},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
    "timeout": {"type": "int", "default": 30},
}

# Options both modules take for the object they manage (each module documents them in its own words).
TENANT_SPEC = {
    "alias": {"type": "str", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "models": {"type": "list", "elements": "str"},
    "max_budget": {"type": "float"},
    "budget_duration": {"type": "str"},
    "rpm_limit": {"type": "int"},
    "tpm_limit": {"type": "int"},
    "blocked": {"type": "bool"},
    "metadata": {"type": "dict"},
    "purge": {"type": "bool", "default": False},
}


class LiteLLMError(Exception):
    """A request LiteLLM refused or could not answer; ``str()`` is safe to show (no secrets)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def _error_text(body: bytes) -> str:
    """LiteLLM's error message from a response body (``{"error": {"message"}}`` or ``{"detail"}``)."""
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return body.decode("utf-8", "replace")[:300].strip()
    if isinstance(data, dict):
        error = data.get("error", data.get("detail"))
        if isinstance(error, dict):
            error = error.get("message", error.get("error", error))
        if error is not None:
            return str(error)[:500]
    return str(data)[:500]


class LiteLLMAdmin:
    """The admin routes of one LiteLLM proxy, called with its master key."""

    def __init__(
        self,
        url: str,
        master_key: str,
        validate_certs: bool = True,
        ca_path: str | None = None,
        timeout: int = 30,
    ):
        self.url = url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {master_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout

    def request(
        self, method: str, path: str, query: dict[str, Any] | None = None, body: dict[str, Any] | None = None
    ) -> Any:
        url = self.url + path + (f"?{urlencode(query)}" if query else "")
        try:
            response = open_url(
                url,
                method=method,
                data=None if body is None else json.dumps(body),
                headers=self._headers,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                timeout=self.timeout,
                follow_redirects="safe",
            )
            raw = response.read()
        except HTTPError as exc:
            status = exc.code
            text = _error_text(exc.read() or b"")
            if status in (401, 403):
                raise LiteLLMError(
                    f"LiteLLM at {self.url} refused the master key ({status} on {method} {path}: {text}). "
                    "Pass the proxy's master key in master_key (k3sllm keeps it in the Secret "
                    "litellm-master-key and in artifacts/secrets/litellm-master-key).",
                    status,
                ) from None
            raise LiteLLMError(f"LiteLLM answered {status} to {method} {path}: {text}", status) from None
        except URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(reason):
                raise LiteLLMError(
                    f"The TLS certificate of {self.url} is not trusted ({reason}). Set ca_path to the CA "
                    "that signed it (k3sllm's self-signed CA is fetched to artifacts/ca.crt)."
                ) from None
            raise LiteLLMError(
                f"Cannot reach LiteLLM at {self.url} ({reason}). Check url and that the gateway is running."
            ) from None
        except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
            raise LiteLLMError(
                f"Cannot reach LiteLLM at {self.url} ({exc}). Check url and that the gateway is running."
            ) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise LiteLLMError(
                f"{method} {path} at {self.url} did not answer JSON: is url LiteLLM's base URL?"
            ) from None

    # Teams -------------------------------------------------------------------------------------
    def find_team(self, alias: str) -> Record | None:
        """The team whose ``team_alias`` is ``alias``, or None."""
        teams = self.request("GET", "/team/list") or []
        if not isinstance(teams, list):
            raise LiteLLMError(f"GET /team/list at {self.url} did not answer a list of teams.")
        matches = [team for team in teams if team.get("team_alias") == alias]
        if len(matches) > 1:
            ids = ", ".join(str(team.get("team_id")) for team in matches)
            raise LiteLLMError(
                f"{len(matches)} LiteLLM teams are named {alias!r} (team ids {ids}); the alias must name one "
                "team. Delete or rename the extra teams in LiteLLM's UI or with /team/delete."
            )
        return matches[0] if matches else None

    def create_team(self, alias: str, settings: dict[str, Any]) -> Record:
        answer = self.request("POST", "/team/new", body={"team_alias": alias, **_api_values(settings)})
        if not isinstance(answer, dict):
            raise LiteLLMError(f"POST /team/new at {self.url} did not return the new team.")
        return answer

    def update_team(self, team_id: str, settings: dict[str, Any]) -> None:
        if settings:
            self.request("POST", "/team/update", body={"team_id": team_id, **_api_values(settings)})

    def set_team_blocked(self, team_id: str, blocked: bool) -> None:
        self.request("POST", "/team/block" if blocked else "/team/unblock", body={"team_id": team_id})

    def delete_team(self, team_id: str) -> None:
        self.request("POST", "/team/delete", body={"team_ids": [team_id]})

    # Keys --------------------------------------------------------------------------------------
    def find_key(self, alias: str) -> Record | None:
        """The live key whose ``key_alias`` is ``alias`` (its settings and hashed token), or None."""
        answer = self.request(
            "GET", "/key/list", query={"key_alias": alias, "return_full_object": "true", "size": 100}
        )
        keys = [key for key in (answer or {}).get("keys", []) if isinstance(key, dict)]
        matches = [key for key in keys if key.get("key_alias") == alias]
        if len(matches) > 1:
            raise LiteLLMError(
                f"{len(matches)} LiteLLM keys are named {alias!r}; the alias must name one key. Delete the "
                "extra keys in LiteLLM's UI or with /key/delete."
            )
        if matches and not matches[0].get("token"):
            raise LiteLLMError(f"GET /key/list at {self.url} returned key {alias!r} without its token hash.")
        return matches[0] if matches else None

    def generate_key(self, alias: str, settings: dict[str, Any]) -> Record:
        answer = self.request("POST", "/key/generate", body={"key_alias": alias, **_api_values(settings)})
        if not isinstance(answer, dict) or not str(answer.get("key", "")).startswith("sk-"):
            raise LiteLLMError(f"POST /key/generate at {self.url} did not return a key value.")
        return answer

    def update_key(self, token: str, settings: dict[str, Any]) -> None:
        if settings:
            self.request("POST", "/key/update", body={"key": token, **_api_values(settings)})

    def set_key_blocked(self, token: str, blocked: bool) -> None:
        self.request("POST", "/key/block" if blocked else "/key/unblock", body={"key": token})

    def delete_key(self, token: str) -> None:
        self.request("POST", "/key/delete", body={"keys": [token]})


def _api_values(settings: dict[str, Any]) -> dict[str, Any]:
    """Request fields from settings (``blocked`` has its own routes after creation)."""
    return {field: value for field, value in settings.items() if field in SETTINGS}


def run_tenant_module(
    module: AnsibleModule,
    name: str,
    find: Callable[[LiteLLMAdmin, str], Record | None],
    absent: Callable[[AnsibleModule, LiteLLMAdmin, Record | None], None],
    present: Callable[[AnsibleModule, LiteLLMAdmin, Record | None], None],
) -> None:
    """What both modules do: check the task, find its object by alias, make it absent or present.

    Fails ``module`` with every problem of the task before anything is sent, and with LiteLLM's
    answer when a request fails. ``find(api, alias)`` returns the object or None; ``absent`` and
    ``present`` take ``(module, api, current)`` and end the module.
    """
    p = module.params
    alias = p["alias"]
    found = problems(p)
    if not alias.strip():
        found.append("alias must not be empty.")
    if found:
        module.fail_json(msg=f"{name} {alias!r}: " + " ".join(found))
    api = LiteLLMAdmin(p["url"], p["master_key"], p["validate_certs"], p["ca_path"], p["timeout"])
    try:
        current = find(api, alias)
        if p["state"] == "absent":
            absent(module, api, current)
        present(module, api, current)
    except LiteLLMError as exc:
        module.fail_json(msg=f"{name} {alias!r}: {exc}", status=exc.status)


# Pure logic ------------------------------------------------------------------------------------
def problems(params: dict[str, Any]) -> list[str]:
    """What is wrong with the requested settings, before anything is sent."""
    found = []
    budget = params.get("max_budget")
    if budget is not None and (not math.isfinite(budget) or budget < 0):
        found.append(f"max_budget must be a number >= 0 (US dollars), got {budget}.")
    for field in ("rpm_limit", "tpm_limit"):
        if params.get(field) is not None and params[field] < 0:
            found.append(f"{field} must be >= 0, got {params[field]}.")
    duration = params.get("budget_duration")
    if duration is not None and not DURATION.match(duration):
        found.append(
            f"budget_duration {duration!r} is not a LiteLLM duration: a number and one of s, m, h, d, w, mo "
            "(for example 30d or 1mo)."
        )
    if any(not isinstance(model, str) or not model for model in params.get("models") or []):
        found.append("models must be a list of model names (empty = every model).")
    return found


def normalize(field: str, value: Any) -> Any:
    """One canonical form per setting, so that equal settings compare equal."""
    if field == "models":
        return sorted(set(value or []))
    if field == "max_budget":
        return None if value is None else float(value)
    if field in ("rpm_limit", "tpm_limit"):
        return None if value is None else int(value)
    if field == "blocked":
        return bool(value)
    if field == "metadata":
        return dict(value or {})
    return value or None  # budget_duration, team_id: "" means unset


def desired_settings(
    requested: dict[str, Any], purge: bool = False, fields: tuple[str, ...] = SETTINGS
) -> dict[str, Any]:
    """The settings a task asks for: those it gives, plus (with ``purge``) the cleared value of the rest.

    ``metadata`` is never purged: LiteLLM and its UI keep their own entries there.
    """
    desired: dict[str, Any] = {}
    for field in fields:
        value = requested.get(field)
        if value is not None:
            desired[field] = normalize(field, value)
        elif purge and field in CLEARED:
            desired[field] = normalize(field, CLEARED[field])
    return desired


def _same(field: str, before: Any, after: Any) -> bool:
    if field == "max_budget" and before is not None and after is not None:
        return math.isclose(before, after, rel_tol=1e-9, abs_tol=1e-12)
    return bool(before == after)


def diff_settings(desired: dict[str, Any], current: Record) -> dict[str, Any]:
    """``{field: {"before": ..., "after": ...}}`` for every desired setting that ``current`` lacks.

    ``metadata`` compares only the entries the task gives; its ``after`` is the merged mapping,
    which is what an update must send (LiteLLM replaces metadata as a whole).
    """
    changes: dict[str, Any] = {}
    for field, wanted in desired.items():
        have = normalize(field, current.get(field))
        if field == "metadata":
            if any(have.get(name) != value for name, value in wanted.items()):
                changes[field] = {"before": have, "after": {**have, **wanted}}
        elif not _same(field, have, wanted):
            changes[field] = {"before": have, "after": wanted}
    return changes


def planned_changes(
    desired: dict[str, Any], current: Record | None, fields: tuple[str, ...] = SETTINGS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The changes that bring ``current`` (None: not created yet) to ``desired``, and the settings after them."""
    if current is None:
        changes = {field: {"before": None, "after": value} for field, value in desired.items()}
        return changes, {**summary({}, fields), **desired}
    changes = diff_settings(desired, current)
    return changes, {
        **summary(current, fields),
        **{field: change["after"] for field, change in changes.items()},
    }


def creation_settings(desired: dict[str, Any]) -> dict[str, Any]:
    """Fields for a create call: the desired settings without empty defaults LiteLLM applies anyway."""
    return {
        field: value for field, value in desired.items() if value not in (None, [], {}) or field == "blocked"
    }


def update_settings(changes: dict[str, Any]) -> dict[str, Any]:
    """Fields for an update call: the new value of every changed setting but ``blocked``."""
    return {field: change["after"] for field, change in changes.items() if field != "blocked"}


def summary(obj: Record, fields: tuple[str, ...] = SETTINGS) -> dict[str, Any]:
    """The managed settings of a LiteLLM team or key, normalised (for return values and diffs)."""
    return {field: normalize(field, obj.get(field)) for field in fields}


# The inventory's tenants ---------------------------------------------------------------------
ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
TEAM_FIELDS = {
    "alias",
    "state",
    "models",
    "max_budget",
    "budget_duration",
    "rpm_limit",
    "tpm_limit",
    "blocked",
    "metadata",
}
KEY_FIELDS = TEAM_FIELDS | {"team", "save"}


def plan_tenants(teams: list[Any], keys: list[Any]) -> dict[str, Any]:
    """Check ``litellm_teams`` and ``litellm_keys`` and split them into what the role does, in order.

    Returns ``team_entries`` (to create or update, each with ``state`` filled in), ``key_entries`` (each
    with ``state`` and ``save`` filled in), ``teams_absent`` (aliases to delete, after the keys) and ``problems``
    (messages naming the setting and the fix; the role stops on any before changing anything).
    """
    found: list[str] = []
    plans: dict[str, list[dict[str, Any]]] = {}
    for setting, entries, allowed in (
        ("litellm_teams", teams, TEAM_FIELDS),
        ("litellm_keys", keys, KEY_FIELDS),
    ):
        if not isinstance(entries, list):
            found.append(f"{setting} must be a list of entries with an alias.")
            entries = []
        seen, normalised = set(), []
        for index, entry in enumerate(entries):
            where = f"{setting}[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("alias"), str):
                found.append(f"{where} needs an alias (a string).")
                continue
            alias = entry["alias"]
            where = f"{setting} entry {alias!r}"
            if not ALIAS.match(alias):
                found.append(
                    f"{where}: the alias may hold letters, digits and . _ @ - (up to 100, starting with a letter "
                    "or digit); a key's alias also names its file under artifacts/keys/."
                )
            if alias in seen:
                found.append(f"{where} appears twice; each alias names one {setting[8:-1]}.")
            seen.add(alias)
            unknown = sorted(set(entry) - allowed)
            if unknown:
                found.append(
                    f"{where}: unknown fields {', '.join(unknown)} (known: {', '.join(sorted(allowed))})."
                )
            item = {"state": "present", **({"save": True} if setting == "litellm_keys" else {}), **entry}
            if item["state"] not in ("present", "absent"):
                found.append(f"{where}: state must be present or absent, not {item['state']!r}.")
            if not isinstance(item.get("save", True), bool):
                found.append(f"{where}: save must be true or false.")
            try:
                settings = {
                    "models": item.get("models"),
                    "max_budget": None if item.get("max_budget") is None else float(item["max_budget"]),
                    "rpm_limit": None if item.get("rpm_limit") is None else int(item["rpm_limit"]),
                    "tpm_limit": None if item.get("tpm_limit") is None else int(item["tpm_limit"]),
                    "budget_duration": item.get("budget_duration"),
                }
            except (TypeError, ValueError):
                found.append(f"{where}: max_budget, rpm_limit and tpm_limit must be numbers.")
            else:
                if settings["models"] is not None and not isinstance(settings["models"], list):
                    found.append(f"{where}: models must be a list of model names.")
                else:
                    found.extend(f"{where}: {problem}" for problem in problems(settings))
            normalised.append(item)
        plans[setting] = normalised
    deleted = [team["alias"] for team in plans["litellm_teams"] if team["state"] == "absent"]
    for key in plans["litellm_keys"]:
        if key["state"] == "present" and key.get("team") in deleted:
            found.append(
                f"litellm_keys entry {key['alias']!r} names team {key['team']!r}, which litellm_teams deletes "
                "(state: absent), and LiteLLM deletes a team's keys with it. Move the key to another team or "
                "delete it too."
            )
    return {
        "team_entries": [team for team in plans["litellm_teams"] if team["state"] == "present"],
        "key_entries": plans["litellm_keys"],
        "teams_absent": deleted,
        "problems": found,
    }
