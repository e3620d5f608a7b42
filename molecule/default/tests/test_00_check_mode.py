"""--check on the converged hosts reports no change (molecule's own check action asserts nothing)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_harness"))

from check_mode import assert_check_mode_unchanged


def test_check_mode_reports_no_change_on_a_converged_host():
    assert_check_mode_unchanged(None)
