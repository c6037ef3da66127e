"""Fixtures for the task tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tasks.fakes import FakeSource


@pytest.fixture
def fake_source(tmp_path: Path) -> FakeSource:
    return FakeSource(tmp_path / "devices")
