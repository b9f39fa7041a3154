"""The committed geodata/ files and their loader, patchmap.geodata."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from patchmap import geodata
from patchmap.errors import InputError

REPO = Path(__file__).resolve().parents[1]
RAW = REPO.parent / "shared" / "data"  # unsimplified inputs; present in CI, optional here

# Rook-adjacent pairs (shared border of positive length) in the full-resolution TIGER 2010
# polygons, as printed by scripts/build_geodata.py: simplification must keep every one.
FULL_RES_ROOK_PAIRS = {"CA": 4340, "RI_DE_DC": 416}


def rook_pairs(geoms: np.ndarray) -> set[tuple[int, int]]:
    """Index pairs whose boundaries share a segment of positive length."""
    i, j = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    i, j = i[i < j], j[i < j]
    boundary = shapely.boundary(geoms)
    shared = shapely.length(shapely.intersection(boundary[i], boundary[j])) > 0
    return set(zip(i[shared].tolist(), j[shared].tolist(), strict=True))


@pytest.fixture(scope="module")
def ca() -> gpd.GeoDataFrame:
    return geodata.zcta_polygons(["CA"])


@pytest.fixture(scope="module")
def small() -> gpd.GeoDataFrame:
    return geodata.zcta_polygons("RI,DE,DC")


def test_bundled_states() -> None:
    assert geodata.bundled_zcta_states() == ["CA", "DC", "DE", "RI"]
    assert len(geodata.zcta_polygons()) == 1769 + 198


def test_every_california_zcta(ca: gpd.GeoDataFrame) -> None:
    assert list(ca.columns) == ["zcta", "state", "land_km2", "water_km2", "population", "geometry"]
    assert len(ca) == 1769
    assert ca["zcta"].is_unique
    assert ca["zcta"].str.fullmatch(r"\d{5}").all()
    assert (ca["state"] == "CA").all()
    assert ca.crs.to_epsg() == 4326
    assert ca["population"].dtype == np.int64
    assert 37_000_000 < ca["population"].sum() < 38_000_000


@pytest.mark.parametrize("fixture", ["ca", "small"])
def test_geometries_valid(fixture: str, request: pytest.FixtureRequest) -> None:
    geoms = request.getfixturevalue(fixture).geometry.values
    assert shapely.is_valid(geoms).all()
    assert not shapely.is_empty(geoms).any()
    assert set(shapely.get_type_id(geoms)) <= {3, 6}  # Polygon, MultiPolygon


@pytest.mark.parametrize("fixture", ["ca", "small"])
def test_coverage_has_no_gaps_between_neighbours_or_overlaps(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    geoms = np.asarray(request.getfixturevalue(fixture).geometry.values)
    assert shapely.coverage_is_valid(geoms)
    # and explicitly, on a sample of touching pairs: no shared area
    i, j = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    i, j = i[i < j][::5], j[i < j][::5]
    assert len(i) > 50
    overlap = shapely.area(shapely.intersection(geoms[i], geoms[j]))
    assert overlap.max() < 1e-12  # square degrees, i.e. about 0.01 m2


@pytest.mark.parametrize(("key", "fixture"), [("CA", "ca"), ("RI_DE_DC", "small")])
def test_adjacency_preserved(key: str, fixture: str, request: pytest.FixtureRequest) -> None:
    pairs = rook_pairs(np.asarray(request.getfixturevalue(fixture).geometry.values))
    assert len(pairs) == FULL_RES_ROOK_PAIRS[key]


@pytest.mark.skipif(not (RAW / "zcta2010_ri_de_dc.parquet").exists(), reason="no raw data")
def test_adjacency_same_pairs_as_full_resolution(small: gpd.GeoDataFrame) -> None:
    raw = gpd.read_parquet(RAW / "zcta2010_ri_de_dc.parquet")
    raw = raw.sort_values(["ZCTA5CE10", "STATEFP10"]).reset_index(drop=True)
    assert raw["ZCTA5CE10"].tolist() == small["zcta"].tolist()
    assert rook_pairs(np.asarray(raw.geometry.values)) == rook_pairs(
        np.asarray(small.geometry.values)
    )


def test_channel_islands(ca: gpd.GeoDataFrame) -> None:
    by_zcta = ca.set_index("zcta").geometry
    # Santa Catalina (Avalon) and San Nicolas Island are island ZCTAs with no land neighbour
    assert shapely.contains_xy(by_zcta["90704"], -118.42, 33.39)
    assert shapely.contains_xy(by_zcta["93042"], -119.5, 33.25)
    # Santa Cruz Island is a part of Ventura's 93001
    assert shapely.contains_xy(by_zcta["93001"], -119.75, 34.0)
    pairs = rook_pairs(np.asarray(ca.geometry.values))
    touched = {k for pair in pairs for k in pair}
    islands = set(ca.index[ca["zcta"].isin(["90704", "93042"])])
    assert not islands & touched


def test_zcta_points(ca: gpd.GeoDataFrame) -> None:
    points = geodata.zcta_points()
    assert list(points.columns) == ["zcta", "lat", "lon", "land_km2", "population", "state"]
    assert len(points) == 33_120
    assert points["zcta"].is_unique
    assert points["state"].notna().all()
    assert set(ca["zcta"]) <= set(points["zcta"])
    in_ca = points.set_index("zcta").loc[ca["zcta"], "state"]
    assert (in_ca == "CA").sum() >= len(ca) - 10  # a few cross-border ZCTAs sit in Nevada


def test_crosswalk_maps_po_boxes_to_existing_zctas() -> None:
    cw = geodata.zip_crosswalk()
    assert list(cw.columns) == ["zip", "zcta", "zip_type", "city", "state"]
    assert cw["zip"].is_unique
    assert cw["zip"].str.fullmatch(r"\d{5}").all() and cw["zcta"].str.fullmatch(r"\d{5}").all()
    known = set(geodata.zcta_points()["zcta"])
    assert cw["zcta"].isin(known).all()
    po = cw[(cw["state"] == "CA") & cw["zip_type"].str.contains("Post Office")]
    assert len(po) > 500
    assert (po["zip"] != po["zcta"]).any()
    row = cw.set_index("zip").loc["90009"]  # Los Angeles PO boxes, inside ZCTA 90045
    assert "Post Office" in row["zip_type"] and row["zcta"] == "90045"


def test_counties_and_states() -> None:
    ri = geodata.counties(["RI"])
    assert list(ri.columns) == ["county", "name", "state_fips", "state", "population", "geometry"]
    assert len(ri) == 5 and (ri["state_fips"] == "44").all()
    assert shapely.is_valid(geodata.counties().geometry.values).all()
    states = geodata.states()
    assert len(states) == 56 and states["state"].is_unique
    assert set(states["state"]) == set(geodata.FIPS_TO_STATE.values())


def test_region_geometry() -> None:
    region = geodata.region_geometry(["RI", "DE"])
    assert region.is_valid
    points = geodata.zcta_points()
    points = points[points["state"].isin(["RI", "DE"])]
    assert shapely.contains_xy(region, points["lon"], points["lat"]).mean() > 0.9
    assert not shapely.contains_xy(region, -118.24, 34.05)  # Los Angeles


def test_geodata_size() -> None:
    files = [p for p in (REPO / "geodata").iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 10.5e6


def test_loaders_return_copies() -> None:
    points = geodata.zcta_points()
    points["population"] = 0
    assert geodata.zcta_points()["population"].sum() > 300_000_000
    small = geodata.zcta_polygons(["RI"])
    small.loc[:, "zcta"] = "xxxxx"
    assert geodata.zcta_polygons(["RI"])["zcta"].str.isdigit().all()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("CA", ["CA"]),
        ("ca", ["CA"]),
        ("California", ["CA"]),
        ("  district of columbia ", ["DC"]),
        ("CA,RI", ["CA", "RI"]),
        ("ri, Delaware ,ri", ["RI", "DE"]),
        ("06", ["CA"]),
        ("6", ["CA"]),
        (["RI", "ca"], ["RI", "CA"]),
    ],
)
def test_normalize_states(given: str | list[str], expected: list[str]) -> None:
    assert geodata.normalize_states(given) == expected


@pytest.mark.parametrize("given", ["XX", "Californa", "99", "", " , ", []])
def test_normalize_states_rejects(given: str | list[str]) -> None:
    with pytest.raises(InputError):
        geodata.normalize_states(given)


def test_zcta_polygons_of_a_state_not_bundled() -> None:
    with pytest.raises(InputError) as err:
        geodata.zcta_polygons(["CA", "TX"])
    message = str(err.value)
    assert "TX" in message and "CA, DC, DE, RI" in message and "\n" not in message


def test_geodata_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(geodata.ENV_VAR, str(tmp_path))
    assert geodata.geodata_dir() == tmp_path
    assert geodata.bundled_zcta_states() == []
    with pytest.raises(InputError, match="not found"):
        geodata.zcta_points()
    monkeypatch.delenv(geodata.ENV_VAR)
    assert (geodata.geodata_dir() / "zcta_ca.parquet").is_file()
