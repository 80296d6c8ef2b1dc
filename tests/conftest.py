"""Shared fixtures: the team's read-only data in ../shared, located once and checked loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A file under ../shared; fails the test (never skips) with a clear message when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"needed test data is missing: {path}. The tests read the team's shared data from ../shared "
            "beside the repository (CI puts it there); check it out beside this clone.",
            pytrace=False,
        )
    return path


@pytest.fixture
def shared() -> Path:
    return shared_path()
