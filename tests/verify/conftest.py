"""Fixtures for the roles/verify tests (the stack itself is in stack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from verify.stack import Stack, start_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with start_stack(tmp_path) as started:
        yield started
