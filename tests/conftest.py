"""Shared fixtures: where the real NAS-Bench-101 files lie.

The real data sits beside the checkout in ``../shared/nb101`` (override with
the environment variable ``NB101_SHARED``). A test that needs a file which is
absent fails when ``CI=true`` and is skipped with a reason elsewhere.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NB101_SHARED", ROOT.parent / "shared" / "nb101"))


def shared_path(relative: str) -> Path:
    """Path of a shared data file, or fail/skip if it is missing."""
    path = SHARED / relative
    if not path.exists():
        message = f"shared data file {path} is missing"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def sample_20k() -> Path:
    return shared_path("sample-20k.h5")


@pytest.fixture
def space_423k() -> Path:
    return shared_path("space-423k.npz")


@pytest.fixture
def golden_dir() -> Path:
    return shared_path("golden")


@pytest.fixture
def format_samples_dir() -> Path:
    return shared_path("format-samples")
