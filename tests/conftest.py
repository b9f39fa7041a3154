"""Shared fixtures: small real inputs, and the CLI invoked the way a user invokes it."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``patchmap ARGS`` as a user does and return its exit status, stdout and stderr.

    In this process (a fresh interpreter per call would spend most of the suite importing
    scipy and sklearn): the same ``main`` entry point and its error handling, stdout and
    stderr captured, and warnings printed to stderr as a fresh interpreter prints them, so
    tests of "one line on stderr" still see them. :func:`run_cli_process` runs the real
    console entry point in a subprocess.
    """
    from patchmap.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    log = logging.getLogger("patchmap")
    saved = (list(log.handlers), log.level, log.propagate)
    here = os.getcwd()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        err.write(warnings.formatwarning(message, category, filename, lineno, line))

    code: int = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("default")  # a fresh interpreter's filters
            for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning):
                warnings.simplefilter("ignore", quiet)
            warnings.showwarning = show
            try:
                main.main(args=argv, prog_name="patchmap")
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(here)
        log.handlers[:] = saved[0]
        log.setLevel(saved[1])
        log.propagate = saved[2]
    return subprocess.CompletedProcess(
        ["patchmap", *argv], code, stdout=out.getvalue(), stderr=err.getvalue()
    )


def run_cli_process(
    *args: str, cwd: Path | None = None, one_core: bool = False
) -> subprocess.CompletedProcess:
    """Run ``python -m patchmap ARGS`` in a subprocess (the real entry point, real exit status).

    ``one_core``: the process may run on one CPU only (where the platform can say so), as
    on a one-core machine: e.g. the Dask engine's own local cluster then has one worker.
    """

    def pin() -> None:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    return subprocess.run(
        [sys.executable, "-m", "patchmap", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        preexec_fn=pin if one_core and hasattr(os, "sched_setaffinity") else None,
    )


@pytest.fixture(scope="session")
def ri_accounts_csv(tmp_path_factory) -> Path:
    """2,000 synthetic accounts over Rhode Island, Delaware and DC, a few deliberately bad."""
    from patchmap.sample import sample_accounts

    path = tmp_path_factory.mktemp("accounts") / "accounts_small.csv"
    sample_accounts(["RI", "DE", "DC"], n=2000, seed=3, bad_share=0.01).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def ca():
    """California's 1,769 ZCTAs with ``unit_id`` (once per module; tests read, never change them)."""
    from patchmap import geodata

    return geodata.zcta_polygons(["CA"]).rename(columns={"zcta": "unit_id"})


@pytest.fixture
def dumbbell_reps():
    """Two 5 x 5 blocks of unit squares joined by one unit, three reps' homes on the left
    and one on the right: no plan gives every rep an equal share (units, reps)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    cells = [(c, r) for c in range(11) for r in range(5) if c != 5 or r == 2]
    units = gpd.GeoDataFrame(
        {"unit_id": [f"u{c}_{r}" for c, r in cells], "population": 1.0},
        geometry=[shapely.box(c * 0.01, r * 0.01, (c + 1) * 0.01, (r + 1) * 0.01) for c, r in cells],
        crs=4326,
    )  # fmt: skip
    at = [(0, 0), (1, 1), (2, 2), (8, 2)]
    reps = pd.DataFrame({"rep_id": ["a", "b", "c", "d"],
                         "lat": [r * 0.01 + 0.005 for _, r in at],
                         "lon": [c * 0.01 + 0.005 for c, _ in at]})  # fmt: skip
    return units, reps


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


# ---------------------------------------------------------------- scheduling the suite on xdist
#
# `pytest -n 2` runs with `--dist loadscope --no-loadscope-reorder` (pyproject.toml): each
# test module is one unit of work, so a module's fixtures (a Dask cluster, a whole example
# run, the California plan) are built once, not once per worker. Modules are handed out
# longest first (their total duration in the last run, kept in pytest's cache under
# `patchmap/durations` by the xdist controller), so both workers stay busy to the end and
# no long module starts when the rest is done. Without a cache (a fresh checkout, CI) the
# modules of FRESH_ORDER go first, longest first, then the rest in collection order.

DURATIONS_KEY = "patchmap/durations"

#: Seconds per module, summed over its tests' setup, call and teardown: the mean of two
#: `-n 2` runs of a fresh clone (issue 18; load 2-3, so the small modules' weights are
#: high). A rough weight, only for the order of a run without a cache: in collection order
#: the long ones came late and one worker idled; with stale weights a long module was
#: handed out behind shorter ones.
FRESH_ORDER = {
    "test_distributed.py": 56, "test_realign.py": 55, "test_golden.py": 37,
    "test_render.py": 36, "test_readme.py": 33, "test_certify.py": 26,
    "test_segments.py": 20, "test_demo.py": 19, "test_bad_inputs.py": 19,
    "test_colgen_bound.py": 16, "test_hardening.py": 14, "test_notebook.py": 11,
    "test_geofetch.py": 11, "test_scoring.py": 10, "test_cli.py": 9,
    "test_coarsen.py": 8, "test_partition.py": 6, "test_run_config.py": 5,
    "test_corridors.py": 5, "test_geodata.py": 5, "test_edge_file.py": 4,
    "test_adjacency.py": 4, "test_options.py": 4, "test_diff.py": 4,
    "test_imports.py": 3, "test_export.py": 3, "test_routing.py": 3,
    "test_user_units.py": 3,
}  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache = getattr(config, "cache", None)
    last = cache.get(DURATIONS_KEY, {}) if cache is not None else {}
    total: dict[Path, float] = {}
    for item in items:
        if last:
            total[item.path] = total.get(item.path, 0.0) + float(last.get(item.nodeid, 0.0))
        else:
            total[item.path] = float(FRESH_ORDER.get(item.path.name, 0))
    items.sort(key=lambda item: -total[item.path])  # stable: a module keeps its order


_durations: dict[str, float] = {}
_called: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration
    if report.when == "call":
        _called.add(report.nodeid)  # ran (not --setup-plan, --collect-only or skipped)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    cache = getattr(config, "cache", None)
    if hasattr(config, "workerinput") or cache is None or not _called:
        return  # the xdist controller records, with every worker's reports
    merged = {**cache.get(DURATIONS_KEY, {}), **{k: _durations[k] for k in _called}}
    cache.set(DURATIONS_KEY, {k: round(v, 3) for k, v in merged.items()})
