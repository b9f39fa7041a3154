"""Shared fixtures: small real inputs, and the CLI invoked the way a user invokes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``patchmap ARGS`` in a subprocess (the real entry point, real exit status)."""
    return subprocess.run(
        [sys.executable, "-m", "patchmap", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="session")
def ri_accounts_csv(tmp_path_factory) -> Path:
    """2,000 synthetic accounts over Rhode Island, Delaware and DC, a few deliberately bad."""
    from patchmap.sample import sample_accounts

    path = tmp_path_factory.mktemp("accounts") / "accounts_small.csv"
    sample_accounts(["RI", "DE", "DC"], n=2000, seed=3, bad_share=0.01).to_csv(path, index=False)
    return path


@pytest.fixture(autouse=True, scope="session")
def _bundled_geodata_only():
    """Tests read the committed geodata, never a developer's national cache."""
    import os

    old = os.environ.get("PATCHMAP_CACHE")
    os.environ["PATCHMAP_CACHE"] = "off"
    yield
    if old is None:
        os.environ.pop("PATCHMAP_CACHE", None)
    else:
        os.environ["PATCHMAP_CACHE"] = old
