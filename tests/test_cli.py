"""The CLI contract end to end on real geography (RI, DE, DC ZCTAs), as a user runs it."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import run_cli, run_cli_process
from patchmap import geodata


@pytest.fixture(scope="module")
def small_chain(tmp_path_factory, ri_accounts_csv):
    out = tmp_path_factory.mktemp("chain")
    units = out / "units.parquet"
    # rules scoring: these tests check the CLI contract; tests/test_scoring.py the model
    r = run_cli("layers", ri_accounts_csv, "--units", "zcta", "--model", "rules", "--out", units)
    assert r.returncode == 0, r.stderr
    plan = out / "plan.csv"
    r2 = run_cli(
        "partition",
        units,
        "--id",
        "unit_id",
        "--balance",
        "accounts",
        "--territories",
        "6",
        "--seed",
        "1",
        "--effort",
        "0",
        "--out",
        plan,
    )
    assert r2.returncode == 0, r2.stderr
    return out, units, plan, r.stdout


def test_layers_tally_adds_up(small_chain, ri_accounts_csv):
    out, units, _, stdout = small_chain
    tally = next(line for line in stdout.splitlines() if " read, " in line)
    n_read, n_placed, n_rejected = (int(tally.split()[i].rstrip(",")) for i in (0, 2, 4))
    assert n_read == len(pd.read_csv(ri_accounts_csv)) == n_placed + n_rejected
    assert n_rejected > 0  # the fixture carries deliberately bad rows
    rejects = pd.read_csv(out / "units.rejects.csv")
    assert len(rejects) == n_rejected and rejects["reason"].notna().all()


def test_plan_has_every_unit_once_and_is_contiguous(small_chain):
    from patchmap.metrics import is_contiguous
    from patchmap.units.adjacency import build_adjacency

    _, units_path, plan_path, _ = small_chain
    units = pd.read_parquet(units_path)
    plan = pd.read_csv(plan_path, dtype=str)
    assert list(plan.columns) == ["unit_id", "territory"]
    assert sorted(plan["unit_id"]) == sorted(units["unit_id"])
    assert plan["territory"].nunique() == 6
    import geopandas as gpd

    gdf = gpd.read_parquet(units_path)
    adj = build_adjacency(gdf, id_col="unit_id")
    labels = plan.set_index("unit_id").loc[adj.ids, "territory"].to_numpy()
    assert is_contiguous(adj, labels).all()


def test_export_lookup_covers_every_zcta_once(small_chain, tmp_path, ri_accounts_csv):
    _, units_path, plan_path, _ = small_chain
    r = run_cli(
        "export", units_path, plan_path, "--accounts", ri_accounts_csv, "--model", "rules",
        "--out", tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    z2r = pd.read_csv(tmp_path / "zip_to_rep.csv", dtype=str)
    assert not z2r["zip"].duplicated().any()
    units = pd.read_parquet(units_path)
    assert set(z2r["zcta"]) == set(units["unit_id"])  # every ZCTA of the region appears
    cw = geodata.zip_crosswalk()
    in_scope = cw[cw["zcta"].isin(units["unit_id"])]
    assert set(in_scope["zip"]) <= set(z2r["zip"])  # PO-box ZIPs included
    assignments = pd.read_csv(tmp_path / "assignments.csv", dtype=str)
    assert assignments["account_id"].is_unique
    for name in ["territories.geojson", "summary.csv"]:
        assert (tmp_path / name).stat().st_size > 0


def test_map_is_written(small_chain, tmp_path):
    _, units_path, plan_path, _ = small_chain
    out = tmp_path / "map.html"
    r = run_cli("map", units_path, plan_path, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "leaflet" in out.read_text().lower()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["layers", "{missing}", "--units", "zcta", "--out", "{tmp}/u.parquet"], "file not found"),
        (["layers", "{nocol}", "--units", "zcta", "--out", "{tmp}/u.parquet"], "'account_id'"),
        (
            [
                "layers",
                "{nocol}",
                "--units",
                "h3",
                "--resolution",
                "16",
                "--out",
                "{tmp}/u.parquet",
            ],
            "--resolution: expected an integer in [0, 15], got 16",
        ),
        # values in the user's units (percent), rules between options worded with flags
        (
            "partition {units} --balance accounts --territories 3 --tolerance 0 --out {tmp}/p.csv".split(),
            "--tolerance: expected a percentage in (0, 100), got 0.0",
        ),
        (
            "partition {units} --balance accounts --territories 3 --tolerance 100 --out {tmp}/p.csv".split(),
            "--tolerance: expected a percentage in (0, 100), got 100.0",
        ),
        (
            "partition {units} --balance accounts --territories 3 --seed -1 --out {tmp}/p.csv".split(),
            "--seed: expected an integer >= 0, got -1",
        ),
        (
            "partition {units} --balance accounts --territories 3 --quota-cap 120% --out {tmp}/p.csv".split(),
            "--quota-cap needs --quota",
        ),
        (
            "layers {nocol} --units zcta --scheduler tcp://x:1 --out {tmp}/u.parquet".split(),
            "--scheduler needs --engine dask",
        ),
        (
            "layers {nocol} --units {units} --out {tmp}/u.parquet".split(),
            "--units: a polygon file needs --unit-id",
        ),
        (
            "partition {units} --balance accounts --out {tmp}/p.csv".split(),
            "--territories: give the number of territories (or --reps / --current)",
        ),
        (
            [
                "partition",
                "{units}",
                "--id",
                "nope",
                "--balance",
                "accounts",
                "--territories",
                "3",
                "--out",
                "{tmp}/p.csv",
            ],
            "'nope'",
        ),
        (
            [
                "partition",
                "{units}",
                "--id",
                "unit_id",
                "--balance",
                "ghost",
                "--territories",
                "3",
                "--out",
                "{tmp}/p.csv",
            ],
            "ghost",
        ),
        (
            [
                "partition",
                "{units}",
                "--id",
                "unit_id",
                "--balance",
                "accounts",
                "--territories",
                "1",
                "--out",
                "{tmp}/p.csv",
            ],
            "territories",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(small_chain, tmp_path, args, expected):
    _, units_path, _, _ = small_chain
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("id,lat,lon\n1,41.8,-71.4\n")
    subs = {
        "missing": tmp_path / "missing.csv",
        "nocol": nocol,
        "units": units_path,
        "tmp": tmp_path,
    }
    r = run_cli(*[a.format(**subs) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "u.parquet").exists() and not (tmp_path / "p.csv").exists()


def test_console_entry_point_bad_input_is_one_line_exit_2(tmp_path):
    """The real interpreter (not the in-process runner): one line, exit 2, no traceback."""
    r = run_cli_process(
        "layers", tmp_path / "missing.csv", "--units", "zcta", "--out", tmp_path / "u.parquet"
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "file not found" in lines[0]
    assert not (tmp_path / "u.parquet").exists()
