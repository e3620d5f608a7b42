"""--check on the converged hosts reports no change (molecule's own check action asserts nothing)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_harness"))

import pytest
from check_mode import assert_check_mode_unchanged


# A whole --check pass of the converge playbook (the harness allows it 900 s): more than the suite's
# default 300 s per test when the machine is busy.
@pytest.mark.timeout(960)
def test_check_mode_reports_no_change_on_a_converged_host():
    assert_check_mode_unchanged(None)
