"""Layers on the bundled geography: nothing lost, empty units kept, bad input named."""

from __future__ import annotations

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
import shapely

from patchmap import geodata
from patchmap.errors import InputError
from patchmap.io import read_units
from patchmap.layers import (
    COUNTED_NOTES,
    apply_chunk,
    build_layers,
    chunk_rejects,
    decide_units,
    finish_layers,
    fold_sums,
    layer_spec,
    locate_points,
    place_accounts,
    prepare_accounts,
    survey_chunk,
    survey_geometry,
    write_layers,
)
from patchmap.notes import merge_counts
from patchmap.units.county import county_units
from patchmap.units.h3 import cells_to_polygons, h3_units, points_to_cells
from patchmap.units.zcta import zcta_units

SUMMED = ["accounts", "customers", "score", "reach", "potential", "whitespace"]


@pytest.fixture(scope="module")
def accounts() -> pd.DataFrame:
    """1,500 accounts inside RI/DE/DC ZCTAs (points drawn in the real polygons), some
    ZIP-only, with synthetic score/reach/potential and a status."""
    rng = np.random.default_rng(5)
    z = geodata.zcta_polygons(["RI", "DE", "DC"])
    z = z[z["population"] > 0].reset_index(drop=True)
    pick = rng.choice(len(z), size=1500, p=z["population"] / z["population"].sum())
    pts = shapely.get_geometry(z.geometry.iloc[pick].sample_points(1, rng=rng).values, 0)
    n = len(pick)
    df = pd.DataFrame(
        {
            "account_id": [f"T{i:05d}" for i in range(n)],
            "lat": shapely.get_y(pts),
            "lon": shapely.get_x(pts),
            "zcta": pd.array(z["zcta"].to_numpy()[pick], dtype="string"),
            "location_source": "latlon",
            "status": np.where(rng.random(n) < 0.3, "customer", "prospect"),
            "score": rng.uniform(0, 100, n),
            "reach": rng.uniform(0, 100, n),
            "potential": rng.lognormal(9, 1, n),
        }
    )
    zip_only = np.arange(n) % 10 == 0  # every tenth account was geocoded from its ZIP
    df.loc[zip_only, "location_source"] = "zip"
    zp = geodata.zcta_points().set_index("zcta")
    df.loc[zip_only, "lat"] = zp["lat"].reindex(df.loc[zip_only, "zcta"]).to_numpy()
    df.loc[zip_only, "lon"] = zp["lon"].reindex(df.loc[zip_only, "zcta"]).to_numpy()
    df.loc[~zip_only, "zcta"] = pd.NA
    return df


def _conserved(result, accounts: pd.DataFrame) -> None:
    units, placed = result.units, result.placed
    assert len(placed) + len(result.rejects) == len(accounts)  # read = placed + rejected
    assert units["unit_id"].is_unique
    assert set(placed["unit_id"]) <= set(units["unit_id"])
    assert units["accounts"].sum() == len(placed)
    assert units["customers"].sum() == (placed["status"] == "customer").sum()
    for col in ("score", "reach", "potential"):
        assert units[col].sum() == pytest.approx(placed[col].sum(), rel=1e-9)
    ws = placed.loc[placed["status"] != "customer", "potential"].sum()
    assert units["whitespace"].sum() == pytest.approx(ws, rel=1e-9)
    assert (units["area_km2"] > 0).all()
    dens = units["potential"] / units["area_km2"]
    assert np.allclose(units["potential_density"], dens)
    assert units.crs.equals("EPSG:4326")


def test_zcta_layers_conserve_and_keep_empty_units(accounts):
    result = build_layers(accounts, units="zcta")
    _conserved(result, accounts)
    assert result.states == ["DC", "DE", "RI"]
    assert len(result.units) == len(zcta_units(["RI", "DE", "DC"]))
    assert (result.units["accounts"] == 0).any()  # unpopulated ZCTAs stay, with zeros
    assert len(result.rejects) == 0
    # ZIP-geocoded accounts land in the ZCTA they were geocoded to
    z = accounts[accounts["location_source"] == "zip"].set_index("account_id")["zcta"]
    got = result.placed.set_index("account_id").loc[z.index, "unit_id"]
    assert (got.to_numpy() == z.to_numpy()).all()
    assert {"population", "state", "accounts_density", "score_density", "reach_density"} <= set(
        result.units
    )


def test_h3_layers_with_region(accounts):
    result = build_layers(accounts, units="h3", resolution=7, states=["RI"])
    in_ri = result.placed
    assert len(result.rejects) > 0 and set(result.rejects["reason"]) == {"outside region"}
    _conserved(result, accounts)
    # every cell of the RI polyfill is a unit, most of them empty
    poly = set(
        h3.h3shape_to_cells_experimental(
            h3.geo_to_h3shape(geodata.region_geometry("RI")), 7, "overlap"
        )
    )
    assert poly <= set(result.units["unit_id"])
    assert (result.units["accounts"] == 0).sum() > len(result.units) / 2
    assert h3.get_resolution(in_ri["unit_id"].iloc[0]) == 7
    assert set(result.units["state"]) == {"RI"}


def test_h3_and_county_layers_infer_region(accounts):
    for kind in ("h3", "county"):
        result = build_layers(accounts, units=kind, resolution=6)
        _conserved(result, accounts)
        assert len(result.rejects) == 0
        assert set(result.states) == {"RI", "DE", "DC"}
    region = set(county_units(["RI", "DE", "DC"])["unit_id"])
    assert region <= set(result.units["unit_id"])
    # beyond the region (generalized county outlines at state lines), only units holding accounts
    extra = result.units[~result.units["unit_id"].isin(region)]
    assert (extra["accounts"] > 0).all()


def test_accounts_outside_bundled_zcta_coverage_are_rejected_with_reason(accounts):
    far = pd.DataFrame(
        {
            "account_id": ["BOS", "SEA", "SEA2"],
            "lat": [42.36, 47.61, 47.62],
            "lon": [-71.06, -122.33, -122.34],
            "status": "prospect",
            "score": 1.0,
            "reach": 1.0,
            "potential": 1.0,
        }
    )
    df = pd.concat([accounts, far], ignore_index=True)
    result = build_layers(df, units="zcta")
    _conserved(result, df)
    reasons = result.rejects.set_index("account_id")["reason"]
    assert reasons["BOS"].startswith("in MA: outside the bundled ZCTA coverage")
    assert reasons["SEA"].startswith("in WA")
    assert result.rejects["row"].tolist() == [
        len(accounts) + 1,
        len(accounts) + 2,
        len(accounts) + 3,
    ]


def test_coastline_sliver_joins_nearest_and_open_sea_is_rejected():
    units = zcta_units(["RI"])
    crs = "EPSG:5070"
    block = units[units["unit_id"] == "02807"]  # Block Island
    outline = block.to_crs(crs).geometry.iloc[0]
    c = outline.centroid
    far_east = shapely.Point(outline.bounds[2] + 400, c.y)  # 400 m offshore
    open_sea = shapely.Point(outline.bounds[2] + 30_000, c.y)
    pts = gpd.GeoSeries([far_east, open_sea], crs=crs).to_crs(4326)
    df = pd.DataFrame({"account_id": ["near", "sea"], "lat": pts.y, "lon": pts.x})
    placed, rejects = place_accounts(df, units, "zcta")
    assert placed["unit_id"].tolist() == ["02807"]
    assert rejects["account_id"].tolist() == ["sea"]
    assert rejects["reason"].iloc[0] == "outside the region's units"


def test_missing_measures_are_zero_and_noted(accounts):
    bare = accounts[["account_id", "lat", "lon"]]
    result = build_layers(bare, units="county")
    assert result.units["accounts"].sum() == len(bare)
    assert (
        (result.units[["score", "reach", "potential", "whitespace", "customers"]] == 0).all().all()
    )
    assert any("'score'" in n for n in result.notes) and any("status" in n for n in result.notes)


def test_bad_inputs_raise_input_error(accounts):
    with pytest.raises(InputError, match="resolution"):
        build_layers(accounts, units="h3", resolution=16)
    with pytest.raises(InputError, match="units must be one of h3, zcta, county") as err:
        build_layers(accounts, units="hexes")
    assert "--" not in str(err.value)  # library words; the CLI says --units (test_cli)
    bad = accounts.copy()
    bad["score"] = bad["score"].astype(object)
    bad.loc[7, "score"] = "high"
    with pytest.raises(InputError, match=r"'score'.*row 8"):
        build_layers(bad, units="zcta")
    with pytest.raises(InputError, match="'lat'"):
        build_layers(accounts.drop(columns="lat"), units="zcta")


def test_write_layers_roundtrip(accounts, tmp_path):
    result = build_layers(accounts, units="zcta", states="RI")
    out = write_layers(result, tmp_path / "units.parquet")
    back = read_units(out)
    assert len(back) == len(result.units)
    assert back["score"].sum() == pytest.approx(result.units["score"].sum())
    assert back["unit_id"].tolist() == result.units["unit_id"].tolist()


def test_h3_helpers_match_h3():
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(41.2, 42.0, 500), rng.uniform(-71.8, -71.1, 500)
    cells = points_to_cells(np.r_[lat, lat[:5]], np.r_[lon, lon[:5]], 8)
    assert list(cells[:500]) == [h3.latlng_to_cell(a, b, 8) for a, b in zip(lat, lon, strict=True)]
    assert list(cells[500:]) == list(cells[:5])
    polys = cells_to_polygons(list(cells[:50]) + [h3.get_pentagons(2)[0]])
    assert polys.is_valid.all() and len(polys) == 51
    assert shapely.contains_xy(polys.values[:50], lon[:50], lat[:50]).all()
    units = h3_units(geodata.region_geometry("DC"), 8)
    assert units["unit_id"].is_unique and units["unit_id"].is_monotonic_increasing
    with pytest.raises(InputError):
        points_to_cells(lat, lon, -1)


def test_locate_points_first_polygon_wins_and_none_is_minus_one():
    a = shapely.box(0, 0, 2, 2)
    b = shapely.box(1, 0, 3, 2)
    got = locate_points(
        np.array([0.5, 1.5, 2.5, 9.0]), np.array([1.0, 1.0, 1.0, 1.0]), np.array([a, b])
    )
    assert got.tolist() == [0, 0, 1, -1]


def test_zcta_units_without_polygons_are_voronoi_cells_of_the_gazetteer(accounts):
    """A state with no ZCTA polygons is still planned by ZIP area: Voronoi cells, every ZCTA."""
    import shapely

    from patchmap import geodata

    result = build_layers(accounts, units="zcta", states=["NV"])
    nv = geodata.zcta_points().query("state == 'NV'")
    assert sorted(result.units["unit_id"]) == sorted(nv["zcta"])
    assert shapely.coverage_is_valid(result.units.geometry.values)
    assert result.units["accounts"].sum() == len(result.placed)


def test_units_file_records_its_kind_and_resolution(accounts, tmp_path):
    """The layer's GeoParquet metadata says what it is; later stages read it, not the ids.

    Delaware's county FIPS codes (10001, 10003, 10005) are also Delaware ZIP codes: a
    guess from the ids calls the layer ZCTAs, the record says counties.
    """
    from patchmap.export import unit_kind
    from patchmap.units.adjacency import build_adjacency
    from patchmap.units.meta import h3_resolution, recorded
    from patchmap.units.meta import unit_kind as layer_kind

    cases = {
        "h3": build_layers(accounts, units="h3", resolution=6, states=["RI"]),
        "county": build_layers(accounts, units="county", states=["DE"]),
        "zcta": build_layers(accounts, units="zcta", states=["DC"]),
    }
    for kind, result in cases.items():
        path = write_layers(result, tmp_path / f"{kind}.parquet")
        back = read_units(path)
        assert recorded(back) == {
            "unit_kind": kind,
            "h3_resolution": 6 if kind == "h3" else None,
        }
        assert layer_kind(back) == kind
    de = read_units(tmp_path / "county.parquet")
    assert sorted(de["unit_id"]) == ["10001", "10003", "10005"]
    assert layer_kind(de.copy().assign(x=1).iloc[:, :]) == "county"  # survives pandas ops
    assert unit_kind(de) == "polygon"  # export's routing: by point, not by ZIP id
    bare = pd.DataFrame({"unit_id": de["unit_id"]})  # no record: the ids are all one has
    assert layer_kind(bare) == "zcta"
    hexes = read_units(tmp_path / "h3.parquet")
    assert h3_resolution(hexes) == 6
    assert len(build_adjacency(hexes, id_col="unit_id").ids) == len(hexes)


@pytest.mark.parametrize("kind", ["zcta", "county", "h3"])
def test_stages_over_chunks_give_the_one_chunk_layer(accounts, kind):
    """prepare and survey per chunk -> decide -> apply per chunk -> fold in row order ->
    finish, over three chunks (what the Dask engine schedules, without a cluster), gives
    build_layers' units, region, notes and rejects exactly."""
    acc = accounts.assign(source_row=np.arange(1, len(accounts) + 1))
    acc.loc[[7, 800], ["lat", "lon"]] = [[0.0, 0.0], [40.75, -73.99]]  # the sea; New York
    ref = build_layers(acc, units=kind, resolution=7)
    spec = layer_spec(kind, 7, None)
    preps = [prepare_accounts(acc.iloc[r], kind) for r in np.array_split(np.arange(len(acc)), 3)]
    surveys = [survey_chunk(spec, p.lat, p.lon, survey_geometry(spec)) for p in preps]
    notes = merge_counts([n for p in preps for n in p.notes], COUNTED_NOTES)  # added up
    layout = decide_units(spec, surveys, notes)
    chunks = [apply_chunk(spec, layout, p, s.cells) for p, s in zip(preps, surveys, strict=True)]
    totals = None
    for c in chunks:
        totals = fold_sums(totals, c.contrib, len(layout.units))
    notes += merge_counts([n for c in chunks for n in c.notes], COUNTED_NOTES)
    units, region = finish_layers(spec, layout, totals, notes)
    pd.testing.assert_frame_equal(units, ref.units, check_exact=True)
    assert region == ref.states
    assert notes == ref.notes
    pd.testing.assert_frame_equal(chunk_rejects([c.rejects for c in chunks]), ref.rejects)
    assert len(ref.rejects) >= 1 and (kind == "zcta" or "NY" in set(ref.units["state"]))
