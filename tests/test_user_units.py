"""Bring your own polygons: `layers --units FILE --unit-id COL`, then partition them."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

from conftest import run_cli
from patchmap import geodata


def test_layers_and_partition_on_user_polygons(tmp_path, ri_accounts_csv):
    # "Sales areas": RI/DE/DC counties in a GeoPackage with their own id column name
    areas = geodata.counties(["RI", "DE", "DC"]).rename(columns={"county": "area_code"})
    areas = areas[["area_code", "name", "geometry"]]
    path = tmp_path / "areas.gpkg"
    areas.to_file(path, driver="GPKG")
    units = tmp_path / "units.parquet"
    r = run_cli(
        "layers", ri_accounts_csv, "--units", path, "--unit-id", "area_code",
        "--model", "rules", "--out", units,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    out = gpd.read_parquet(units)
    assert sorted(out["unit_id"]) == sorted(areas["area_code"]) and "name" in out.columns
    tally = next(line for line in r.stdout.splitlines() if " read, " in line)
    n_read, n_placed, n_rejected = (int(tally.split()[i].rstrip(",")) for i in (0, 2, 4))
    assert n_read == n_placed + n_rejected and out["accounts"].sum() == n_placed

    plan = tmp_path / "plan.csv"
    r2 = run_cli(
        "partition",
        path,
        "--id",
        "area_code",
        "--balance",
        "population",
        "--territories",
        "3",
        "--out",
        plan,
    )
    assert r2.returncode == 2 and "population" in r2.stderr  # the file has no such column
    r3 = run_cli(
        "partition",
        units,
        "--id",
        "unit_id",
        "--balance",
        "accounts",
        "--territories",
        "3",
        "--effort",
        "0",
        "--out",
        plan,
    )
    assert r3.returncode == 0, r3.stderr[-2000:]
    assert sorted(pd.read_csv(plan, dtype=str)["unit_id"]) == sorted(areas["area_code"])


def test_user_polygons_need_an_id_column(tmp_path, ri_accounts_csv):
    path = tmp_path / "areas.geojson"
    geodata.counties(["RI"])[["county", "geometry"]].to_file(path, driver="GeoJSON")
    r = run_cli("layers", ri_accounts_csv, "--units", path, "--out", tmp_path / "u.parquet")
    assert r.returncode == 2 and "--unit-id" in r.stderr
    r = run_cli(
        "layers",
        ri_accounts_csv,
        "--units",
        path,
        "--unit-id",
        "nope",
        "--out",
        tmp_path / "u.parquet",
    )
    assert r.returncode == 2 and "'nope'" in r.stderr and "county" in r.stderr
