"""National geography: fetch (served from a local HTTP server), verify, cache, convert, use.

Census-style zips are built from bundled California ZCTAs and served on 127.0.0.1 only; the
known-vintage table is pointed at that server with ``$PATCHMAP_CENSUS_BASE_URL``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import os
import shutil
import threading
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from patchmap import geodata, geofetch
from patchmap.errors import InputError
from patchmap.geocode import zip_locations
from patchmap.notes import with_code
from patchmap.units.custom import load_user_units

ZCTA_2020 = geofetch.VINTAGES[("zcta", 2020)]
SERVED = "/" + ZCTA_2020.path  # GENZ2020/shp/cb_2020_us_zcta520_500k.zip
BAY_AREA = (-122.55, 37.60, -122.20, 37.90)  # San Francisco, Oakland, Berkeley, Daly City


# ---------------------------------------------------------------- Census-style files


def write_zip(gdf: gpd.GeoDataFrame, zip_path: Path, layer: str) -> Path:
    """Write ``gdf`` as shapefile ``layer`` (pyogrio) and zip it the way the Census does."""
    shp_dir = zip_path.parent / f".{zip_path.stem}-shp"
    shp_dir.mkdir(parents=True, exist_ok=True)
    gdf.to_file(shp_dir / f"{layer}.shp", driver="ESRI Shapefile", engine="pyogrio")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for part in sorted(shp_dir.iterdir()):
            archive.write(part, part.name)
    shutil.rmtree(shp_dir)
    return zip_path


@pytest.fixture(scope="module")
def bay() -> gpd.GeoDataFrame:
    """A few dozen bundled California ZCTAs as a Census 2020 file has them (NAD83, ALAND20...).

    One ZCTA gets an id that is in no crosswalk: a "new" ZIP of the newer vintage.
    """
    ca = geodata.zcta_polygons(["CA"])
    rep = shapely.point_on_surface(ca.geometry.values)
    inside = shapely.contains_xy(shapely.box(*BAY_AREA), shapely.get_x(rep), shapely.get_y(rep))
    sample = ca[inside].reset_index(drop=True)
    assert 30 <= len(sample) <= 100
    ids = sample["zcta"].copy()
    ids.iloc[-1] = new_zip()
    return gpd.GeoDataFrame(
        {
            "ZCTA5CE20": ids,
            "GEOID20": ids,
            "ALAND20": (sample["land_km2"] * 1e6).round().astype("int64"),
            "AWATER20": (sample["water_km2"] * 1e6).round().astype("int64"),
        },
        geometry=sample.geometry.values,
        crs=4326,
    ).to_crs(4269)


@functools.cache
def new_zip() -> str:
    """A California-looking ZIP that is neither in the crosswalk nor a 2010 ZCTA."""
    taken = set(geodata.zip_crosswalk()["zip"]) | set(geodata.zcta_points()["zcta"])
    return next(z for z in (f"941{i:02d}" for i in range(100)) if z not in taken)


@pytest.fixture(scope="module")
def bay_zip(bay: gpd.GeoDataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_zip(bay, tmp_path_factory.mktemp("census") / ZCTA_2020.filename, ZCTA_2020.layer)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files; paths in ``server.truncate`` are cut short of their Content-Length."""

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path in self.server.truncate:
            data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        super().do_GET()


@dataclasses.dataclass
class Census:
    """The local stand-in for www2.census.gov: a directory served over HTTP."""

    root: Path
    url: str
    server: http.server.ThreadingHTTPServer

    def put(self, src: Path, path: str = SERVED) -> Path:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        return target

    @property
    def requests(self) -> list[str]:
        return self.server.requests


@pytest.fixture
def census(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bay_zip: Path) -> Iterator[Census]:
    """Serve tmp_path/www on a free 127.0.0.1 port; cache in tmp_path/cache; small vintage."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_Handler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests, server.truncate = [], set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(geofetch.BASE_URL_ENV_VAR, url)
    monkeypatch.setenv(geodata.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(geofetch, "DOWNLOAD_RETRIES", 0)
    # the served file is a few dozen ZCTAs, not the ~33,800 of the real national file
    monkeypatch.setitem(
        geofetch.VINTAGES, ("zcta", 2020), dataclasses.replace(ZCTA_2020, units=(10, 200))
    )
    site = Census(root, url, server)
    site.put(bay_zip)
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- download, verify, use


def test_fetch_verify_record_convert_and_use(
    census: Census, bay: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    result = geofetch.fetch_geodata("zcta", progress=False)

    assert (result.kind, result.vintage, result.cached, result.changed) == (
        "zcta",
        2020,
        False,
        False,
    )
    assert result.source == census.url + SERVED
    assert census.requests == [SERVED]
    served = census.root / SERVED.lstrip("/")
    assert result.sha256 == sha256(served)
    assert result.download == cache / "downloads" / ZCTA_2020.filename
    assert sha256(result.download) == result.sha256
    assert result.units == len(bay)

    manifest = json.loads((cache / "manifest.json").read_text())
    entry = manifest["entries"]["zcta/2020"]
    assert entry["sha256"] == result.sha256 and entry["units"] == len(bay)
    assert entry["id_column"] == "ZCTA5CE20" and entry["states"] == ["CA"]
    assert set(entry["layers"]) == {"analysis", "display"}
    assert str(tmp_path) not in json.dumps(entry["layers"])  # cache-relative paths
    for level, info in entry["layers"].items():
        assert sha256(cache / info["path"]) == info["sha256"] == entry["layers"][level]["sha256"]

    analysis = gpd.read_parquet(result.paths["analysis"])
    display = gpd.read_parquet(result.paths["display"])
    assert list(analysis.columns) == geodata.zcta_polygons(["RI"]).columns.tolist()
    assert analysis.crs.to_epsg() == 4326
    for layer in (analysis, display):
        geoms = np.asarray(layer.geometry.values)
        assert shapely.is_valid(geoms).all() and shapely.coverage_is_valid(geoms)
    assert (
        shapely.get_num_coordinates(display.geometry.values).sum()
        < shapely.get_num_coordinates(analysis.geometry.values).sum()
    )
    assert (
        entry["layers"]["analysis"]["rook_pairs"][0] == entry["layers"]["analysis"]["rook_pairs"][1]
    )

    # registered: geodata uses the cached national polygons where it has the state
    ca = geodata.zcta_polygons(["CA"])
    assert sorted(ca["zcta"]) == sorted(bay["ZCTA5CE20"])
    assert ca["population"].sum() > 1_000_000  # 2010 population joined by ZCTA id
    assert len(geodata.zcta_polygons(["CA"], level="display")) == len(bay)
    assert len(geodata.zcta_polygons(["RI"])) == len(geodata.zcta_polygons(["RI"], vintage=2010))
    assert len(geodata.zcta_polygons(["CA"], vintage=2010)) == 1769  # the bundled vintage
    assert set(geodata.zcta_states()) == {"CA", "DC", "DE", "RI"}
    with pytest.raises(InputError, match="vintage 2030"):
        geodata.zcta_polygons(["CA"], vintage=2030)

    listing = geofetch.list_geodata()
    cached = listing[listing["where"] == "cache"].set_index("level")
    assert set(cached.index) == {"analysis", "display", "download"}
    assert cached.loc["download", "sha256"] == result.sha256
    assert (cached["vintage"] == 2020).all() and (cached["units"] == len(bay)).all()
    bundled = listing[listing["where"] == "bundled"]
    assert {"zcta", "county", "state", "zip_crosswalk"} <= set(bundled["kind"])
    assert bundled["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()

    # a second fetch is served from the cache: no request
    again = geofetch.fetch_geodata("zcta", progress=False)
    assert again.cached and again.sha256 == result.sha256 and again.paths == result.paths
    assert census.requests == [SERVED]


def test_changed_file_on_the_server_is_noticed(
    census: Census, bay: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = geofetch.fetch_geodata("zcta", progress=False)
    census.put(write_zip(bay.iloc[1:], tmp_path / "v2" / ZCTA_2020.filename, ZCTA_2020.layer))

    assert geofetch.fetch_geodata("zcta", progress=False).cached  # the cache answers, offline
    with pytest.warns(geofetch.GeodataChangedWarning, match="changed since it was recorded"):
        second = geofetch.fetch_geodata("zcta", progress=False, refresh=True)
    assert second.changed and not second.cached and second.sha256 != first.sha256
    assert second.units == len(bay) - 1
    entry = json.loads((cache / "manifest.json").read_text())["entries"]["zcta/2020"]
    assert entry["sha256"] == second.sha256 and entry["previous_sha256"] == [first.sha256]
    assert not any(p.exists() for p in first.paths.values())  # superseded layers removed
    assert len(geodata.zcta_polygons(["CA"])) == len(bay) - 1

    # refreshing an unchanged file: nothing to do
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = geofetch.fetch_geodata("zcta", progress=False, refresh=True)
    assert same.cached and not same.changed and same.sha256 == second.sha256

    # the cache was lost (layers and download) and the server's file changed again: refuse
    census.put(write_zip(bay.iloc[2:], tmp_path / "v3" / ZCTA_2020.filename, ZCTA_2020.layer))
    for path in [*second.paths.values(), second.download]:
        path.unlink()
    manifest_before = (cache / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="changed since it was recorded.*refresh"):
        geofetch.fetch_geodata("zcta", progress=False)
    assert (cache / "manifest.json").read_bytes() == manifest_before
    assert cache_files(cache) == [cache / "manifest.json"]


def test_cached_layers_lost_are_rebuilt_from_the_download(census: Census) -> None:
    first = geofetch.fetch_geodata("zcta", progress=False)
    first.paths["analysis"].unlink()
    again = geofetch.fetch_geodata("zcta", progress=False)
    assert not again.cached and again.sha256 == first.sha256
    assert census.requests == [SERVED]  # converted again from the verified download
    assert again.paths["analysis"].is_file()


def _truncate_connection(census: Census, good: Path) -> None:
    census.server.truncate.add(SERVED)


def _truncate_file(census: Census, good: Path) -> None:
    data = good.read_bytes()
    (census.root / SERVED.lstrip("/")).write_bytes(data[: len(data) * 2 // 3])


def _corrupt_member(census: Census, good: Path) -> None:
    data = bytearray(good.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 64] = bytes(64)  # inside the compressed .shp
    (census.root / SERVED.lstrip("/")).write_bytes(bytes(data))


def _html_error_page(census: Census, good: Path) -> None:
    (census.root / SERVED.lstrip("/")).write_text("<html>Service unavailable</html>")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate_connection, "download failed"),
        (_truncate_file, "not a readable zip archive"),
        (_corrupt_member, "corrupted|not a readable zip"),
        (_html_error_page, "not a readable zip archive"),
    ],
)
def test_truncated_or_corrupted_download_caches_nothing(
    census: Census, bay_zip: Path, tmp_path: Path, damage, message: str
) -> None:
    damage(census, bay_zip)
    with pytest.raises(InputError, match=message) as err:
        geofetch.fetch_geodata("zcta", progress=False)
    assert "\n" not in str(err.value)
    assert cache_files(tmp_path / "cache") == []  # no half file, no manifest entry
    assert len(geodata.zcta_polygons(["CA"])) == 1769  # still the bundled polygons


def test_missing_file_on_the_server(census: Census, tmp_path: Path) -> None:
    (census.root / SERVED.lstrip("/")).unlink()
    with pytest.raises(InputError, match="404"):
        geofetch.fetch_geodata("zcta", progress=False)
    assert cache_files(tmp_path / "cache") == []


def test_unknown_vintage_and_kind() -> None:
    with pytest.raises(InputError, match=r"no known zcta vintage 1999 \(known: 2010, 2020"):
        geofetch.fetch_geodata("zcta", year=1999, progress=False)
    with pytest.raises(InputError, match="unknown geography kind 'tract'"):
        geofetch.fetch_geodata("tract", progress=False)


def test_file_without_the_id_column(census: Census, bay: gpd.GeoDataFrame, tmp_path: Path) -> None:
    renamed = bay.rename(columns={"ZCTA5CE20": "ZIP"})
    census.put(write_zip(renamed, tmp_path / "bad" / ZCTA_2020.filename, ZCTA_2020.layer))
    with pytest.raises(InputError, match="no zcta id column ZCTA5CE20.*ZIP"):
        geofetch.fetch_geodata("zcta", progress=False)
    assert cache_files(tmp_path / "cache") == []


def test_point_layer_is_rejected(census: Census, bay: gpd.GeoDataFrame, tmp_path: Path) -> None:
    points = bay.set_geometry(bay.representative_point())
    census.put(write_zip(points, tmp_path / "pts" / ZCTA_2020.filename, ZCTA_2020.layer))
    with pytest.raises(InputError, match="Point geometries, not polygons"):
        geofetch.fetch_geodata("zcta", progress=False)
    assert cache_files(tmp_path / "cache") == []


def test_wrong_layer_and_implausible_count(
    census: Census, bay: gpd.GeoDataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    census.put(write_zip(bay, tmp_path / "w" / ZCTA_2020.filename, "tl_2020_06_zcta520"))
    with pytest.raises(InputError, match="expected layer cb_2020_us_zcta520_500k"):
        geofetch.fetch_geodata("zcta", progress=False)
    monkeypatch.setitem(geofetch.VINTAGES, ("zcta", 2020), ZCTA_2020)  # the national range
    census.put(write_zip(bay, tmp_path / "n" / ZCTA_2020.filename, ZCTA_2020.layer))
    with pytest.raises(InputError, match=r"expected 33,000 to 34,500"):
        geofetch.fetch_geodata("zcta", progress=False)
    assert cache_files(tmp_path / "cache") == []


def census_style(zctas: gpd.GeoDataFrame, year: int = 2020) -> gpd.GeoDataFrame:
    """Bundled ZCTA polygons with a Census file's columns (ZCTA5CE20, ALAND20, ...)."""
    yy = str(year)[2:]
    return gpd.GeoDataFrame(
        {
            f"ZCTA5CE{yy}": zctas["zcta"].to_numpy(),
            f"ALAND{yy}": (zctas["land_km2"] * 1e6).round().astype("int64").to_numpy(),
            f"AWATER{yy}": (zctas["water_km2"] * 1e6).round().astype("int64").to_numpy(),
        },
        geometry=zctas.geometry.values,
        crs=4326,
    )


def test_source_local_file_or_url(census: Census, tmp_path: Path) -> None:
    # a state TIGER 2010 file on disk (Rhode Island, whole): vintage from its name
    ri = census_style(geodata.zcta_polygons(["RI"]), 2010)
    local = write_zip(ri, tmp_path / "dl" / "tl_2010_44_zcta510.zip", "tl_2010_44_zcta510")
    result = geofetch.fetch_geodata("zcta", source=local, progress=False)
    assert (result.vintage, result.download, result.sha256) == (2010, None, sha256(local))
    assert geofetch.fetch_geodata("zcta", source=local, progress=False).cached
    assert census.requests == []
    assert geodata.read_manifest()["entries"]["zcta/2010"]["states"] == ["RI"]

    # a GeoPackage without a recognisable year: id column ZCTA5CE20 says 2020
    gpkg = tmp_path / "dl" / "zctas.gpkg"
    census_style(geodata.zcta_polygons(["RI"], vintage=2010)).to_file(
        gpkg, driver="GPKG", engine="pyogrio"
    )
    assert geofetch.fetch_geodata("zcta", source=gpkg, progress=False).vintage == 2020

    # any URL
    census.put(local, "/mirror/tl_2010_44_zcta510.zip")
    by_url = geofetch.fetch_geodata(
        "zcta", source=f"{census.url}/mirror/tl_2010_44_zcta510.zip", progress=False
    )
    assert by_url.cached and by_url.sha256 == result.sha256  # same bytes: same cache entry
    assert len(geodata.zcta_polygons(["RI"])) == len(ri)  # newest (2020) answers for RI only
    assert len(geodata.zcta_polygons(["CA"])) == 1769  # California stays bundled

    with pytest.raises(InputError, match="file not found"):
        geofetch.fetch_geodata("zcta", source=tmp_path / "nope.zip", progress=False)


# ---------------------------------------------------------------- ZIPs across vintages


def test_zip_status_bundled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(geodata.CACHE_ENV_VAR, str(tmp_path / "empty-cache"))
    crosswalk = geodata.zip_crosswalk()
    absent = next(f"900{i:02d}" for i in range(100) if f"900{i:02d}" not in set(crosswalk["zip"]))
    zips = pd.Series(["90045", "90009", "2903", "02903-1234", "abc", None, "00011", absent],
                     index=list("abcdefgh"))  # fmt: skip
    status = geodata.zip_status(zips)
    assert list(status.columns) == ["zip", "zcta", "status", "reason"]
    assert status.index.tolist() == list("abcdefgh")
    assert status["status"].tolist() == [
        "ok", "ok", "ok", "ok", "invalid", "invalid", "unknown", "not_in_crosswalk",
    ]  # fmt: skip
    assert status.loc["b", "zcta"] == "90045"  # PO boxes resolve to their containing ZCTA
    assert status.loc["c", "zip"] == "02903"
    assert status.loc["g", "reason"] == "unknown ZIP (no ZIP code starts with 000)"
    assert "not in the 2015 crosswalk vintage" in status.loc["h", "reason"]
    assert (status.loc[status["status"] == "ok", "reason"] == "").all()
    located = zip_locations(status["zip"])["zcta"].notna()
    assert located.tolist() == (status["status"] == "ok").tolist()


def test_zip_status_against_a_newer_zcta_vintage(census: Census, bay: gpd.GeoDataFrame) -> None:
    geofetch.fetch_geodata("zcta", progress=False)
    kept, dropped = bay["ZCTA5CE20"].iloc[0], "90045"  # Los Angeles: not in the 2020 sample
    status = geodata.zip_status([kept, dropped, new_zip(), "02903"]).set_index("zip")
    assert status["status"].tolist() == ["ok", "retired", "not_in_crosswalk", "ok"]
    assert (
        status.loc["90045", "reason"] == "ZIP retired: its ZCTA 90045 no longer exists in ZCTA 2020"
    )
    assert status.loc[new_zip(), "zcta"] == new_zip()
    assert "ZCTA 2020 polygon exists" in status.loc[new_zip(), "reason"]


# ---------------------------------------------------------------- user polygons


@pytest.fixture
def user_units(tmp_path: Path) -> tuple[gpd.GeoDataFrame, Path]:
    ri = geodata.zcta_polygons(["RI"]).head(12)
    gdf = gpd.GeoDataFrame(
        {"area_code": np.arange(100, 112), "owner": [f"rep{i % 3}" for i in range(12)]},
        geometry=ri.geometry.values,
        crs=4326,
    )
    return gdf, tmp_path


def test_load_user_units(user_units: tuple[gpd.GeoDataFrame, Path]) -> None:
    gdf, tmp = user_units
    bowtie = shapely.Polygon([(-71.5, 41.5), (-71.4, 41.6), (-71.4, 41.5), (-71.5, 41.6)])
    gdf.loc[3, "geometry"] = bowtie
    path = tmp / "areas.gpkg"
    gdf.to_crs(3857).to_file(path, driver="GPKG", engine="pyogrio")

    units, notes = load_user_units(path, "area_code")
    assert list(units.columns) == ["unit_id", "owner", "geometry"]
    assert units["unit_id"].tolist() == [str(i) for i in range(100, 112)]
    assert units.crs.to_epsg() == 4326
    assert shapely.is_valid(units.geometry.values).all()
    assert set(shapely.get_type_id(units.geometry.values)) <= {3, 6}
    (repaired,) = with_code(notes, "repaired_geometry")
    assert repaired.data["count"] == 1 and "103" in repaired
    (moved,) = with_code(notes, "reprojected")
    assert moved.data["crs"] == "EPSG:3857" and "reprojected from EPSG:3857" in moved


def test_load_user_units_without_crs(user_units: tuple[gpd.GeoDataFrame, Path]) -> None:
    gdf, tmp = user_units
    path = tmp / "no_crs.parquet"
    gdf.set_crs(None, allow_override=True).to_parquet(path)
    units, notes = load_user_units(path, "area_code")
    assert units.crs.to_epsg() == 4326
    assert notes == [f"{path}: no CRS; assumed EPSG:4326 (longitude/latitude)"]


@pytest.mark.parametrize(
    ("change", "id_col", "message"),
    [
        (lambda g: g, "territory", r"no id column 'territory' \(columns: area_code, owner\)"),
        (lambda g: g.assign(area_code=[100, 101, 100, *range(103, 112)]), "area_code",
         "duplicate ids in column 'area_code': 100"),
        (lambda g: g.set_geometry(g.representative_point()), "area_code",
         "a Point layer; units must be polygons"),
        (lambda g: g.assign(unit_id=1), "area_code", "column 'unit_id' that is not the id"),
    ],
)  # fmt: skip
def test_load_user_units_rejects(
    user_units: tuple[gpd.GeoDataFrame, Path], change, id_col: str, message: str
) -> None:
    gdf, tmp = user_units
    path = tmp / "bad.geojson"
    change(gdf).to_file(path, driver="GeoJSON", engine="pyogrio")
    with pytest.raises(InputError, match=message) as err:
        load_user_units(path, id_col)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_cli_fetch_and_list(census: Census) -> None:
    """`patchmap geodata fetch|list` as a user runs them (in-process, against the local server)."""
    from click.testing import CliRunner

    from patchmap.cli import main

    runner = CliRunner()
    fetched = runner.invoke(main, ["geodata", "fetch", "zcta", "--quiet"])
    assert fetched.exit_code == 0, fetched.output
    assert "sha256 " in fetched.output and "analysis:" in fetched.output
    listed = runner.invoke(main, ["geodata", "list"])
    assert listed.exit_code == 0 and "cache" in listed.output and "2020" in listed.output
    bad = runner.invoke(main, ["geodata", "fetch", "zcta", "--year", "1999"])
    assert bad.exit_code == 2 and "known: 2010, 2020" in bad.output


def test_source_answers_only_for_the_states_it_covers(
    census: Census, bay: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    """A source holding Rhode Island whole and a corner of California is used for RI only:
    the rest of California is not claimed (its ZIPs are not "retired", its polygons stay)."""
    from click.testing import CliRunner

    from patchmap.cli import main

    runner = CliRunner()
    corner = tmp_path / "bay.gpkg"
    bay.to_crs(4326).to_file(corner, driver="GPKG", engine="pyogrio")
    refused = runner.invoke(main, ["geodata", "fetch", "zcta", "--source", str(corner), "--quiet"])
    assert refused.exit_code == 2, refused.output
    last = refused.output.strip().splitlines()[-1]  # after the conversion's notes
    assert last.startswith(f"error: {corner}: covers no state whole (CA 3% of its 2010 ZCTAs)")
    assert "Traceback" not in refused.output and refused.output.count("error:") == 1
    assert cache_files(tmp_path / "cache") == []  # nothing recorded

    ri = census_style(geodata.zcta_polygons(["RI"]))
    mixed = tmp_path / "ri_and_bay.gpkg"
    pd.concat([ri, bay.to_crs(4326).drop(columns="GEOID20")], ignore_index=True).to_file(
        mixed, driver="GPKG", engine="pyogrio"
    )
    fetched = runner.invoke(main, ["geodata", "fetch", "zcta", "--source", str(mixed), "--quiet"])
    assert fetched.exit_code == 0, fetched.output
    assert f"{mixed}: covers RI" in fetched.output
    assert f"{mixed}: holds only part of CA 3% of its 2010 ZCTAs: not used there" in fetched.output
    entry = geodata.read_manifest()["entries"]["zcta/2020"]
    assert entry["states"] == ["RI"] and 0 < entry["partial_states"]["CA"] < 0.05

    assert len(geodata.zcta_polygons(["CA"])) == 1769  # bundled, not the 57 of the corner
    assert len(geodata.zcta_polygons(["RI"])) == len(ri)
    with pytest.raises(InputError, match="no ZCTA polygons for CA"):
        geodata.zcta_polygons(["CA"], vintage=2020)
    status = geodata.zip_status(pd.Series(["90001", "94103", "02903", new_zip()]))
    # 90001 (Los Angeles) is not in the file but the file does not cover California
    assert status["status"].tolist() == ["ok", "ok", "ok", "not_in_crosswalk"]
    assert "polygon exists" not in status["reason"].iloc[3]  # the new bay ZIP is not claimed


def test_unwritable_cache_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from patchmap.cli import main

    source = tmp_path / "ri.gpkg"
    census_style(geodata.zcta_polygons(["RI"])).to_file(source, driver="GPKG", engine="pyogrio")
    (tmp_path / "a-file").write_text("not a folder\n")
    folders = [tmp_path / "a-file" / "cache"]  # the parent is a regular file: even root fails
    if os.geteuid() != 0:  # as root a read-only folder is still writable
        folders.append(tmp_path / "read-only")
        folders[-1].mkdir()
        folders[-1].chmod(0o555)
    for cache in folders:
        monkeypatch.setenv(geodata.CACHE_ENV_VAR, str(cache))
        out = CliRunner().invoke(main, ["geodata", "fetch", "zcta", "--source", str(source)])
        assert out.exit_code == 2, out.output
        assert out.output.startswith(f"error: {cache}: cannot write to the geodata cache folder")
        assert len(out.output.strip().splitlines()) == 1


def test_county_source_of_one_state_leaves_the_others_bundled(
    census: Census, tmp_path: Path
) -> None:
    everywhere = geodata.counties()
    ri = everywhere[everywhere["state"] == "RI"]
    source = tmp_path / "ri_counties.gpkg"
    gpd.GeoDataFrame(
        {"GEOID": ri["county"].to_numpy(), "NAME": ri["name"].to_numpy()},
        geometry=ri.geometry.values,
        crs=4326,
    ).to_file(source, driver="GPKG", engine="pyogrio")
    result = geofetch.fetch_geodata("county", source=source, year=2020, progress=False)
    assert f"{source}: covers RI" in result.notes
    after = geodata.counties()
    assert sorted(after["county"]) == sorted(everywhere["county"])  # not RI's 5 for the nation
    assert after["county"].is_monotonic_increasing
    assert len(geodata.counties(["CA"])) == 58
