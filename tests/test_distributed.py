"""Layers on Dask: on a real two-worker cluster, the pandas engine's units, value for value."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

pytest.importorskip("distributed")

from patchmap.accounts import load_accounts
from patchmap.distributed import (
    _fold,
    _quantile_from_top,
    _top_values,
    build_layers_dask,
)
from patchmap.errors import InputError
from patchmap.layers import build_layers
from patchmap.sample import sample_accounts
from patchmap.scoring import score_accounts


@pytest.fixture(scope="module")
def scheduler():
    """A local cluster of two single-threaded worker processes, closed after the module."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster.scheduler_address


def _write_parts(df: pd.DataFrame, directory: Path, n: int) -> Path:
    directory.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(len(df)), n)):
        df.iloc[rows].to_parquet(directory / f"part.{i:03d}.parquet", index=False)
    return directory


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """1,500 accounts over RI, DE and DC (1 % defective) in three Parquet files."""
    df = sample_accounts(["RI", "DE", "DC"], n=1500, seed=3, bad_share=0.01)
    return _write_parts(df, tmp_path_factory.mktemp("dask") / "accounts", 3)


@pytest.fixture(scope="module")
def pandas_engine(dataset):
    """What `patchmap layers` does in pandas: ingest the whole directory, score it."""
    ingest = load_accounts(dataset)
    return ingest, score_accounts(ingest.accounts)


def _assert_same(result, ref, ingest) -> None:
    """Every column of the units identical, geometry too; rejects and tally as pandas."""
    got, want = result.units, ref.units
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(
        pd.DataFrame(got.drop(columns="geometry")),
        pd.DataFrame(want.drop(columns="geometry")),
        check_exact=True,
    )
    assert got.crs == want.crs
    assert shapely.equals_exact(got.geometry.values, want.geometry.values, tolerance=0).all()
    rejects = (
        pd.concat([ingest.rejects, ref.rejects], ignore_index=True)
        if len(ref.rejects)
        else ingest.rejects
    )
    pd.testing.assert_frame_equal(result.rejects, rejects)
    assert result.n_read == ingest.n_read == result.n_placed + len(result.rejects)
    assert result.n_placed == len(ref.placed) == int(got["accounts"].sum())
    assert result.states == ref.states
    assert result.notes == [*ingest.notes, *ref.notes]  # what load_accounts notes, then layers


@pytest.mark.parametrize("kind", ["zcta", "h3"])
def test_same_units_as_the_pandas_engine(scheduler, dataset, pandas_engine, kind):
    ingest, scored = pandas_engine
    ref = build_layers(scored.accounts, units=kind, resolution=7)
    result = build_layers_dask(dataset, units=kind, resolution=7, scheduler=scheduler)
    _assert_same(result, ref, ingest)
    assert result.model_card["model"] == scored.model_card["model"]
    assert (
        result.rejects["reason"] == "no location (lat/lon or zip)"
    ).any()  # defects reached rejects


def test_file_level_matches_pipeline_on_scored_input(scheduler, pandas_engine, tmp_path):
    """Input already scored (one pass, no model), a given region, layer rejects, placements."""
    from patchmap.io import read_units
    from patchmap.pipeline import layers_file

    _, scored = pandas_engine
    given = scored.accounts.drop(columns=["source_row", "zcta", "location_source", "p_win"])
    src = _write_parts(given, tmp_path / "scored", 2)
    lines: list[str] = []
    ref = layers_file(
        src,
        tmp_path / "pandas" / "units.parquet",
        units="county",
        region="RI,DE",
        echo=lines.append,
    )
    result = layers_file(
        src,
        tmp_path / "dask" / "units.parquet",
        units="county",
        region="RI,DE",
        engine="dask",
        scheduler=scheduler,
        echo=lines.append,
    )
    pd.testing.assert_frame_equal(
        read_units(tmp_path / "dask" / "units.parquet"),
        read_units(tmp_path / "pandas" / "units.parquet"),
        check_exact=True,
    )
    csv = [(tmp_path / d / "units.rejects.csv").read_text() for d in ("dask", "pandas")]
    assert csv[0] == csv[1]
    assert lines[0].replace("pandas", "dask") == lines[1]
    assert (result.rejects["reason"] == "outside the region's units").any()  # DC is not RI, DE
    assert result.n_placed == len(ref.placed)


def test_large_table_trains_on_a_sample(scheduler, dataset, pandas_engine, tmp_path):
    """Beyond ``sample_rows`` the model sees a sample: placement and counts do not change."""
    ingest, scored = pandas_engine
    ref = build_layers(scored.accounts, units="zcta")
    result = build_layers_dask(
        dataset, units="zcta", scheduler=scheduler, sample_rows=400, placements=tmp_path / "placed"
    )
    assert result.model_card["fit_sample"] < ingest.n_read
    for col in ("unit_id", "accounts", "customers", "reach"):
        assert result.units[col].tolist() == ref.units[col].tolist()
    # the placed accounts, one file per partition, written under a temporary name first
    placed = pd.read_parquet(tmp_path / "placed")
    assert len(placed) == result.n_placed == len(ref.placed)
    assert (
        placed["unit_id"].value_counts().sort_index().to_dict()
        == ref.placed["unit_id"].value_counts().sort_index().to_dict()
    )
    assert not list(tmp_path.glob("placed.tmp-*"))
    assert result.units["score"].sum() == pytest.approx(ref.units["score"].sum(), rel=0.1)
    assert result.n_read == result.n_placed + len(result.rejects)


def test_duplicate_ids_across_files_named_as_ingest_does(scheduler, tmp_path):
    df = sample_accounts(["RI"], n=200, seed=1)
    src = tmp_path / "dups"
    src.mkdir()
    df.to_parquet(src / "part.000.parquet", index=False)
    df.iloc[::-1].to_parquet(src / "part.001.parquet", index=False)
    with pytest.raises(InputError) as pandas_error:
        load_accounts(src)
    with pytest.raises(InputError) as dask_error:
        build_layers_dask(src, units="zcta", scheduler=scheduler)
    assert str(dask_error.value) == str(pandas_error.value)


def test_unreadable_source_is_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read as Parquet"):
        build_layers_dask(tmp_path / "missing.parquet")
    (tmp_path / "a.parquet").write_text("account_id,lat,lon\n")
    with pytest.raises(InputError, match="a.parquet"):
        build_layers_dask(tmp_path / "a.parquet")
    with pytest.raises(InputError, match="units must be one of") as err:  # library words
        build_layers_dask(tmp_path / "a.parquet", units="tracts")
    assert "--units" not in str(err.value)


@pytest.mark.parametrize("n", [1, 2, 99, 100, 101, 1000, 12345])
def test_percentile_from_partition_tops_is_numpys(n):
    rng = np.random.default_rng(n)
    x = np.concatenate([rng.poisson(3, n // 2), rng.lognormal(2, 1, n - n // 2)]).astype("float64")
    k = math.ceil(0.01 * n) + 2
    sketches = [_top_values(part, k) for part in np.array_split(x, 4)]
    assert _quantile_from_top(sketches, n) == np.quantile(x, 0.99)


def test_fold_in_order_is_bincount():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 50, 10_000)
    w = rng.lognormal(8, 2, codes.size)
    acc = None
    for rows in np.array_split(np.arange(codes.size), 7):
        c = {
            "codes": codes[rows],
            "customers": np.ones(rows.size),
            "score": w[rows],
            "reach": w[rows],
            "potential": w[rows],
            "whitespace": w[rows],
        }
        acc = _fold(acc, {"contrib": c}, 50)
    assert np.array_equal(acc["score"], np.bincount(codes, weights=w, minlength=50))
    assert np.array_equal(acc["accounts"], np.bincount(codes, minlength=50))


def test_partition_row_numbers_are_dataset_row_numbers(scheduler, tmp_path):
    """An error inside a later partition names rows of the whole dataset, as the pandas
    engine names them (ingest numbers rows from the partition's offset)."""
    df = sample_accounts(["RI"], n=300, seed=2)
    df.loc[279, "account_id"] = df.loc[259, "account_id"]  # a duplicate in the last partition
    src = _write_parts(df, tmp_path / "bad", 3)
    with pytest.raises(InputError) as pandas_error:
        load_accounts(src)
    assert "rows 260, 280" in str(pandas_error.value)
    with pytest.raises(InputError) as dask_error:
        build_layers_dask(src, units="zcta", scheduler=scheduler)
    assert str(dask_error.value) == str(pandas_error.value)


def test_bad_value_after_ingest_names_the_dataset_row(scheduler, tmp_path):
    """Text in a given measure in the last partition, found by scoring on a worker: the
    message names the row of the whole dataset, as the pandas engine does (each partition's
    rows carry their numbers from ingest, the later stages read them)."""
    df = sample_accounts(["RI"], n=90, seed=2)
    df["score"], df["potential"] = "50", "1000.0"  # given: no model to fit
    df.loc[79, "score"] = "high"
    src = _write_parts(df, tmp_path / "bad", 3)
    with pytest.raises(InputError) as pandas_error:
        score_accounts(load_accounts(src).accounts)
    assert "(row 80: 'high')" in str(pandas_error.value)
    with pytest.raises(InputError) as dask_error:
        build_layers_dask(src, units="zcta", scheduler=scheduler)
    assert str(dask_error.value) == str(pandas_error.value)


def test_cli_engine_dask_matches_pandas(pandas_engine, scheduler, tmp_path):
    """`patchmap layers --engine dask --scheduler ADDRESS` writes what the pandas engine writes
    (on scored input: the model's parity is tested above, this is the command's plumbing)."""
    import geopandas as gpd

    from conftest import run_cli

    _, scored = pandas_engine
    given = scored.accounts.drop(columns=["source_row", "zcta", "location_source", "p_win"])
    dataset = _write_parts(given, tmp_path / "scored", 2)

    dask_out, pandas_out = tmp_path / "dask.parquet", tmp_path / "pandas.parquet"
    r = run_cli(
        "layers",
        dataset,
        "--units",
        "zcta",
        "--engine",
        "dask",
        "--scheduler",
        scheduler,
        "--sum",
        "annual_revenue",
        "--out",
        dask_out,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    r2 = run_cli(
        "layers", dataset, "--units", "zcta", "--sum", "annual_revenue", "--out", pandas_out
    )
    assert r2.returncode == 0, r2.stderr[-2000:]
    tally = [
        next(line for line in x.stdout.splitlines() if " read, " in line).split(" (")[0]
        for x in (r, r2)
    ]
    assert tally[0] == tally[1]
    got, want = gpd.read_parquet(dask_out), gpd.read_parquet(pandas_out)
    pd.testing.assert_frame_equal(got.drop(columns="geometry"), want.drop(columns="geometry"))
    # the user's own measure (--sum) is summed by both engines, to the account total
    placed = pd.concat(pd.read_parquet(f) for f in sorted(dataset.glob("*.parquet")))
    assert got["annual_revenue"].sum() <= placed["annual_revenue"].sum()
    assert got["annual_revenue"].sum() > 0.9 * placed["annual_revenue"].sum()
    bad = run_cli(
        "layers",
        dataset,
        "--units",
        "zcta",
        "--scheduler",
        scheduler,
        "--out",
        tmp_path / "x.parquet",
    )
    assert bad.returncode == 2 and "--engine dask" in bad.stderr


def test_partition_notes_add_up_by_code_not_by_parsing_text():
    """Each partition's counted notes carry their count as data; the engine adds the data."""
    import pickle

    from patchmap.layers import COUNTED_NOTES, joined_nearest_note, zip_only_note
    from patchmap.notes import merge_counts

    parts = [joined_nearest_note(2, "zcta"), "a plain note", joined_nearest_note(1_000, "zcta")]
    parts = [pickle.loads(pickle.dumps(n)) for n in parts]  # as they come back from workers
    merged = merge_counts([*parts, zip_only_note(3), "a plain note"], COUNTED_NOTES)
    assert merged == [joined_nearest_note(1_002, "zcta"), "a plain note", zip_only_note(3)]
    assert merged[0].code == "joined_nearest" and merged[0].data == {"count": 1002, "kind": "zcta"}
    assert merged[0].startswith("1002 accounts lie in the region but in no ZCTA")


# --- issue 17: the Dask engine rejects, notes and fails as the pandas engine does --------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """120 RI accounts in two files; four points outside the U.S. ((0,0), Beijing, Bangkok,
    Los Angeles with its sign dropped) and two with unusable coordinates but a valid ZIP."""
    df = sample_accounts(["RI"], n=120, seed=3)
    df["lat"], df["lon"] = df["lat"].astype(float), df["lon"].astype(float)
    for i, (la, lo) in enumerate([(0.0, 0.0), (39.9, 116.4), (13.75, 100.5), (34.05, 118.24)]):
        df.loc[i, ["lat", "lon", "zip"]] = [la, lo, None]
    df.loc[[30, 90], "lat"] = 999.0  # out of range, one per file: placed by the ZIP, noted once
    df.loc[[30, 90], "zip"] = "02903"
    return _write_parts(df, tmp_path_factory.mktemp("world") / "accounts", 2)


@pytest.fixture(scope="module")
def world_pandas(world):
    """The pandas engine's ingest and scoring of ``world``, once for both unit kinds."""
    ingest = load_accounts(world)
    return ingest, score_accounts(ingest.accounts)


@pytest.mark.parametrize("kind", ["h3", "zcta"])
def test_points_outside_the_states_and_zip_fallback_as_pandas(scheduler, world, world_pandas, kind):
    ingest, scored = world_pandas
    ref = build_layers(scored.accounts, units=kind, resolution=6)
    result = build_layers_dask(world, units=kind, resolution=6, scheduler=scheduler)
    _assert_same(result, ref, ingest)
    assert sorted(result.rejects["row"]) == [1, 2, 3, 4]
    assert "2 row(s) with unusable lat/lon placed by their ZIP instead (e.g. row 31: " in (
        " ".join(result.notes)
    )
    assert set(result.units["state"].dropna()) <= {"RI", "MA", "CT"}


def test_cli_dask_nothing_placed_is_exit_2_with_the_rejects(scheduler, tmp_path):
    from conftest import run_cli

    df = sample_accounts(["RI"], n=40, seed=4)
    df["lat"], df["lon"], df["zip"] = np.nan, np.nan, "ABCDE"
    src = _write_parts(df, tmp_path / "none", 2)
    df = sample_accounts(["RI"], n=40, seed=4).dropna(subset=["lat"])
    df["lat"] = -df["lat"]  # the southern hemisphere: outside RI
    south = _write_parts(df, tmp_path / "south", 2)
    for data, why in ((src, "invalid ZIP ABCDE (40 rows)"), (south, "outside the region's units")):
        out = tmp_path / f"{data.name}.parquet"
        r = run_cli("layers", data, "--units", "county", "--region", "RI", "--engine", "dask",
                    "--scheduler", scheduler, "--out", out)  # fmt: skip
        assert r.returncode == 2, r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {data}: none of the") and why in last, last
        assert not out.exists()
        rejects = pd.read_csv(tmp_path / f"{data.name}.rejects.csv")
        assert len(rejects) == len(pd.read_parquet(data))


def test_cli_dask_error_on_a_worker_is_one_line(tmp_path):
    """A partition's bad input raised on a worker of the CLI's own cluster: one line on
    stderr, no worker traceback, no warning about the port another cluster holds. (On one
    core, so that cluster has one worker: the module's cluster covers two.)"""
    import socket

    from conftest import run_cli_process

    df = sample_accounts(["RI"], n=60, seed=2)
    df.loc[55, "account_id"] = df.loc[45, "account_id"]  # a duplicate in the last file
    src = _write_parts(df, tmp_path / "dup", 2)
    with socket.socket() as busy:
        try:
            busy.bind(("", 8787))
            busy.listen()
        except OSError:
            pass  # taken already: the case itself
        r = run_cli_process("-q", "layers", src, "--units", "zcta", "--engine", "dask",
                            "--out", tmp_path / "u.parquet", one_core=True)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: {src}: column 'account_id' has 1 duplicated ids (e.g. 'A0000046' on rows 46, 56)"
    ], r.stderr
