"""Shared fixtures for the collection's unit tests."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from ansible.module_utils.testing import patch_module_args


@pytest.fixture
def run_module(capsys: pytest.CaptureFixture[str]) -> Callable[..., dict]:
    """Run a module's main() in-process as Ansible would, and return its JSON result.

    ``_ansible_check_mode`` and friends may be passed in ``args`` like any option.
    """

    def _run(main: Callable[[], None], args: dict) -> dict:
        with patch_module_args(args), pytest.raises(SystemExit):
            main()
        return json.loads(capsys.readouterr().out)

    return _run
