"""Build patchmap's bundled ``geodata/`` from U.S. Census Bureau files.

Defaults read the copies in ``../shared/data`` next to the repository; every input also
accepts the official download (a path or URL to the TIGER/Line zip or shapefile, the gazetteer
``.txt``/``.zip``, the UDS Mapper ``.xlsx``/``.csv``, ...), so newer vintages can be swapped in.
ZCTA polygons are simplified as a *coverage* so neighbouring ZCTAs stay glued together.

    python scripts/build_geodata.py            # or: make geodata
    python scripts/build_geodata.py --tolerance 30 --out build/geodata
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from patchmap import geofetch
from patchmap.errors import InputError
from patchmap.geofetch import (
    DEFAULT_GRID_DEG,
    DEFAULT_TOLERANCE_M,
    assign_states,
    counties_frame,
    file_suffix,
    find_column,
    read_geo,
    simplify_coverage,
    simplify_layer,
    states_frame,
    write_parquet,
    zcta5,
    zcta_frame,
)
from patchmap.io import atomic_path
from patchmap.render.drawing import (
    DRAWING_FILE,
    MIN_GAP_M2,
    SEED_SPACING_M,
    SLIVER_M,
    fill_gaps,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

ZCTA_OUTPUTS = {"ca": "zcta_ca.parquet", "ri_de_dc": "zcta_ri_de_dc.parquet"}

SOURCES = {
    "zcta": "U.S. Census Bureau, TIGER/Line Shapefiles 2010, ZCTA5 by state (tl_2010_SS_zcta510)",
    "gazetteer": "U.S. Census Bureau, 2010 Census Gazetteer Files, ZCTAs (Gaz_zcta_national)",
    "population": "U.S. Census Bureau, 2010 Census Summary File 1, table P1 (total population)",
    "crosswalk": "UDS Mapper ZIP Code to ZCTA Crosswalk 2015 (John Snow, Inc.)",
    "cb": "U.S. Census Bureau cartographic boundary files 2017 (1:10m), via the us-atlas package",
}
PUBLIC_DOMAIN = "public domain (U.S. Government work)"
UDS_LICENCE = "published by UDS Mapper / John Snow, Inc. (JSI) for free use"


# ---------------------------------------------------------------- reading
# Geometry reading, column matching, coverage simplification and the ZCTA, county and state
# layers live in patchmap.geofetch (shared with `patchmap geodata fetch`).


def _read_table(src: str, **kwargs) -> pd.DataFrame:
    """CSV / tab-separated text (plain or zipped, path or URL), Excel or Parquet, all as str."""
    suffix = file_suffix(src)
    if suffix in {".xlsx", ".xls"}:
        df = pd.read_excel(src, dtype=str)
    elif suffix == ".parquet":
        df = pd.read_parquet(src).astype(str)
    else:
        df = pd.read_csv(src, dtype=str, keep_default_na=False, encoding="utf-8-sig", **kwargs)
    df.columns = [str(c).strip() for c in df.columns]
    return df


def read_population(src: str) -> pd.Series:
    """2010 population per ZCTA; state parts of a cross-border ZCTA are summed."""
    df = _read_table(src)
    zcta = zcta5(df[find_column(df, r".*zcta.*", r"geo_?id", r"name", what=src)])
    pop = pd.to_numeric(
        df[find_column(df, r".*population.*", r"p0*1_?0*1n?", what=src)], errors="coerce"
    )
    ok = zcta.notna() & pop.notna()  # drops blank lines and label rows of census exports
    return pop[ok].groupby(zcta[ok]).sum().round().astype("int64")


def read_gazetteer(src: str) -> pd.DataFrame:
    """Gazetteer ZCTAs: ``zcta``, ``lat``, ``lon``, ``land_km2`` (blank trailer lines dropped)."""
    df = _read_table(src, sep="\t")
    df = df[df[find_column(df, r"geoid", what=src)].str.strip() != ""]
    return pd.DataFrame(
        {
            "zcta": zcta5(df[find_column(df, r"geoid", what=src)]),
            "lat": pd.to_numeric(df[find_column(df, r"intptlat", what=src)]),
            "lon": pd.to_numeric(df[find_column(df, r"intptlong?", what=src)]),
            "land_km2": pd.to_numeric(df[find_column(df, r"aland", what=src)]) / 1e6,
        }
    ).reset_index(drop=True)


# ---------------------------------------------------------------- layers


def build_states(src: str) -> gpd.GeoDataFrame:
    """State polygons: ``state_fips``, ``state`` (USPS), ``name``."""
    return states_frame(read_geo(src), src)


def build_zcta_points(
    gazetteer: pd.DataFrame, population: pd.Series, states: gpd.GeoDataFrame
) -> pd.DataFrame:
    """National ZCTA points with population and the state found by point-in-polygon."""
    points = gazetteer.copy()
    pop = points["zcta"].map(population)
    print(f"  zcta_points: {pop.isna().sum()} ZCTAs without population (set to 0)")
    points["population"] = pop.fillna(0).astype("int64")
    points["state"] = assign_states(points, states)
    return points.sort_values("zcta").reset_index(drop=True)


def build_zcta_polygons(
    srcs: Sequence[str],
    population: pd.Series,
    states: gpd.GeoDataFrame,
    tolerance_m: float,
    grid_deg: float,
) -> tuple[gpd.GeoDataFrame, tuple[int, int]]:
    """ZCTA polygons of TIGER files, coverage-simplified, with population.

    Also returns the number of rook-adjacent pairs before and after simplification.
    """
    raw = pd.concat([read_geo(s) for s in srcs], ignore_index=True)
    gdf = zcta_frame(raw, population, states, ", ".join(srcs))
    return simplify_layer(gdf, tolerance_m, grid_deg)


def _drawing_tolerance(zctas: gpd.GeoDataFrame, most_m: float) -> float:
    """Simplification for a state's drawing areas: 1/7,500 of its diagonal (what a map of
    the state shows), between 20 m and ``most_m``."""
    minx, miny, maxx, maxy = zctas.to_crs(5070).total_bounds
    return float(np.clip(np.hypot(maxx - minx, maxy - miny) / 7_500, 20.0, most_m))


def build_drawing(
    zctas: gpd.GeoDataFrame, states: gpd.GeoDataFrame, tolerance_m: float, grid_deg: float
) -> tuple[gpd.GeoDataFrame, dict[str, dict[str, float]]]:
    """Drawing areas: each state's ZCTAs grown over the land no ZCTA covers (for maps only).

    Columns ``zcta``, ``state``, ``source_coords`` and ``minx..maxy`` (vertex count and
    bounds of the analysis polygon, so a map uses a drawing area only for that polygon),
    geometry (coverage-simplified, at most at ``tolerance_m``: drawn, never measured).
    Also the figures per state.
    """
    frames, figures = [], {}
    outlines = states.set_index("state").geometry
    for state, part in zctas.groupby("state", sort=True):
        grown, stats = fill_gaps(part.geometry, outlines[state])  # shapely >= 2.2
        figures[str(state)] = stats
        print(
            f"  {state}: {stats['gap_km2']:,.0f} km2 of land without a ZCTA, "
            f"{stats['filled_km2']:,.0f} km2 given to the nearest ZCTA "
            f"({stats['dropped']} detached shares left out)"
        )
        bounds = shapely.bounds(part.geometry.values)
        frames.append(
            gpd.GeoDataFrame(
                {
                    "zcta": part["zcta"].to_numpy(),
                    "state": part["state"].to_numpy(),
                    "source_coords": shapely.get_num_coordinates(part.geometry.values),
                    "minx": bounds[:, 0],
                    "miny": bounds[:, 1],
                    "maxx": bounds[:, 2],
                    "maxy": bounds[:, 3],
                },
                geometry=simplify_coverage(grown, _drawing_tolerance(part, tolerance_m), grid_deg),
                crs=4326,
            )
        )
    out = pd.concat(frames, ignore_index=True).sort_values("zcta").reset_index(drop=True)
    return gpd.GeoDataFrame(out, geometry="geometry", crs=4326), figures


def build_counties(src: str, points: pd.DataFrame) -> gpd.GeoDataFrame:
    """Counties with USPS state and 2010 population (summed from ZCTA points if not given)."""
    return counties_frame(read_geo(src), points, src)


def build_crosswalk(src: str, known: pd.Series) -> tuple[pd.DataFrame, int]:
    """USPS ZIP -> ZCTA, and how many rows were dropped (ZCTA empty or not in the gazetteer)."""
    raw = _read_table(src)
    cw = pd.DataFrame(
        {
            "zip": zcta5(raw[find_column(raw, r"zip", r"zip_?code", what=src)]),
            "zcta": zcta5(raw[find_column(raw, r"zcta_use", r"zcta", what=src)].replace("", None)),
            "zip_type": raw[find_column(raw, r"zip_?type", what=src)],
            "city": raw[find_column(raw, r"city_?name", r"po_name", what=src)],
            "state": raw[find_column(raw, r"state_?abbr", r"state", what=src)],
        }
    )
    bad = cw["zcta"].isna() | ~cw["zcta"].isin(known)
    print(
        f"  zip_zcta: dropped {bad.sum()} of {len(cw)} ZIPs whose ZCTA is empty or not in the "
        f"gazetteer ({', '.join(sorted(cw.loc[bad, 'state'].unique()))})"
    )
    return cw[~bad].sort_values("zip").reset_index(drop=True), int(bad.sum())


# ---------------------------------------------------------------- writing


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.2f} MB"


def render_readme(
    out: Path,
    rows: dict[str, int],
    args: argparse.Namespace,
    adjacency: dict[str, tuple[int, int]],
    dropped: int,
    filled: dict[str, dict[str, float]],
) -> str:
    """The geodata/README.md text: what each file is, where it comes from, how to rebuild."""

    def size(name: str) -> str:
        return _mb(out / name)

    total = sum(p.stat().st_size for p in out.glob("*.parquet")) / 1e6
    adj = "; ".join(f"{name}: {b} before, {a} after" for name, (b, a) in adjacency.items())
    fill = "; ".join(
        f"{state}: {f['gap_km2']:,.0f} km² uncovered, {f['filled_km2']:,.0f} km² given"
        for state, f in filled.items()
    )
    return f"""# Bundled reference geography

Small, simplified copies of U.S. Census geography that patchmap reads at run time through
`patchmap.geodata` (set `PATCHMAP_GEODATA` to use another directory). Rebuild with
`make geodata`, i.e. `python scripts/build_geodata.py` (see `--help`: every input also
accepts the official Census download, as a path or URL, for a newer vintage).

All layers are EPSG:4326. Parquet files are zstd-compressed; the polygon layers are GeoParquet.
Total size of the Parquet files: {total:.2f} MB.

| file | what | rows | size |
|---|---|---|---|
| `zcta_ca.parquet` | California ZIP Code Tabulation Areas: `zcta`, `state`, `land_km2`, `water_km2`, `population`, geometry | {rows["zcta_ca.parquet"]:,} | {size("zcta_ca.parquet")} |
| `zcta_ri_de_dc.parquet` | same for Rhode Island, Delaware and DC (small; used by fast tests) | {rows["zcta_ri_de_dc.parquet"]:,} | {size("zcta_ri_de_dc.parquet")} |
| `counties.parquet` | counties: `county` (5-digit FIPS), `name`, `state_fips`, `state`, `population`, geometry | {rows["counties.parquet"]:,} | {size("counties.parquet")} |
| `states.parquet` | states, DC, Puerto Rico and territories: `state_fips`, `state`, `name`, geometry | {rows["states.parquet"]:,} | {size("states.parquet")} |
| `zcta_points.parquet` | every U.S. ZCTA as its internal point: `zcta`, `lat`, `lon`, `land_km2`, `population`, `state` (plain Parquet) | {rows["zcta_points.parquet"]:,} | {size("zcta_points.parquet")} |
| `zip_zcta.parquet` | USPS ZIP -> ZCTA: `zip`, `zcta`, `zip_type`, `city`, `state` (plain Parquet) | {rows["zip_zcta.parquet"]:,} | {size("zip_zcta.parquet")} |
| `{DRAWING_FILE}` | ZIP areas for maps only, wall to wall (the ZCTAs above grown over the land no ZCTA covers): `zcta`, `state`, `source_coords`, `minx`, `miny`, `maxx`, `maxy`, geometry (GeoArrow encoding) | {rows[DRAWING_FILE]:,} | {size(DRAWING_FILE)} |

## Sources, vintage and licence

| file | source | vintage | licence |
|---|---|---|---|
| `zcta_ca.parquet`, `zcta_ri_de_dc.parquet` | {SOURCES["zcta"]}; population: {SOURCES["population"]} | 2010 | {PUBLIC_DOMAIN} |
| `{DRAWING_FILE}` | the ZCTA polygons above and the state outlines of `states.parquet` | 2010, 2017 | {PUBLIC_DOMAIN} |
| `counties.parquet`, `states.parquet` | {SOURCES["cb"]}; county population: 2010 ZCTA population summed by ZCTA internal point (an approximation) | 2017 (population 2010) | {PUBLIC_DOMAIN} |
| `zcta_points.parquet` | {SOURCES["gazetteer"]}; population: {SOURCES["population"]} | 2010 | {PUBLIC_DOMAIN} |
| `zip_zcta.parquet` | {SOURCES["crosswalk"]} | 2015 | {UDS_LICENCE} |

## Processing

- ZCTA polygons are simplified as a coverage (`shapely.coverage_simplify`, tolerance
  {args.tolerance:g} m in EPSG:5070, Visvalingam–Whyatt) so that shared borders are simplified
  once for both neighbours: no gaps or overlaps open and every ZCTA keeps its neighbours
  (rook-adjacent pairs, i.e. sharing a border of positive length — {adj}).
  Coordinates are then snapped to a {args.grid:g}° grid; all geometries are valid.
  Island ZCTAs such as 90704 (Santa Catalina) and 93042 (San Nicolas Island) have no land
  neighbour.
- `population` is the 2010 population of the whole ZCTA (a ZCTA crossing a state line is
  summed over its state parts, while its polygon and `land_km2` cover only the in-state part).
  Puerto Rico ZCTAs are absent from the population file and carry population 0.
- `zcta_points.state` is the state polygon containing the gazetteer internal point (the nearest
  state for coastal points that fall outside the generalized state outlines).
- `zip_zcta`: PO-box and unique (single-building) ZIPs map to the ZCTA that contains them
  (`ZCTA_USE`); {dropped} ZIPs whose ZCTA is not in the 2010 gazetteer (territories) are dropped.
- County geometries are repaired with `make_valid`, keeping polygonal parts only.
- `{DRAWING_FILE}`: 2010 ZCTAs leave unpopulated land uncovered, so a territory drawn from
  its ZCTAs falls apart into pieces. The land of each state (its outline in `states.parquet`)
  that no ZCTA covers, less slivers under {2 * SLIVER_M:g} m wide along the coast and pieces
  under {MIN_GAP_M2 / 1e6:g} km², is split among the ZCTAs by nearest border (Voronoi cells of
  points every {SEED_SPACING_M:g} m along the borders) and added to them ({fill}); the result is
  made a clean coverage again (`shapely.coverage_clean`), simplified at 1/7,500 of the
  state's diagonal (20 to {args.drawing_tolerance:g} m) and snapped to {args.drawing_grid:g}°. Maps draw a ZCTA with its
  drawing area only when its polygon is the bundled one (`source_coords` and bounds match);
  adjacency, balance and every metric use the ZCTA polygons themselves.
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = SHARED
    p.add_argument(
        "--zcta-ca",
        nargs="+",
        default=[str(d / "zcta2010_ca.parquet")],
        help="California ZCTA polygons: GeoParquet or TIGER tl_2010_06_zcta510 (zip/URL)",
    )
    p.add_argument(
        "--zcta-ri-de-dc",
        nargs="+",
        default=[str(d / "zcta2010_ri_de_dc.parquet")],
        help="RI, DE and DC ZCTA polygons: GeoParquet or the three TIGER state files",
    )
    p.add_argument(
        "--gazetteer",
        default=str(d / "Gaz_zcta_national_2010.txt"),
        help="ZCTA gazetteer (Gaz_zcta_national.txt or .zip)",
    )
    p.add_argument(
        "--population",
        default=str(d / "zcta_population_2010.csv"),
        help="population per ZCTA (CSV with a ZCTA and a population column)",
    )
    p.add_argument(
        "--crosswalk",
        default=str(d / "zip_to_zcta_2015.csv"),
        help="UDS Mapper ZIP to ZCTA crosswalk (.csv or .xlsx)",
    )
    p.add_argument(
        "--counties",
        default=str(d / "us_counties_2017.parquet"),
        help="county polygons: GeoParquet or cartographic boundary shapefile (zip/URL)",
    )
    p.add_argument(
        "--states",
        default=str(d / "us_states_2017.parquet"),
        help="state polygons: GeoParquet or cartographic boundary shapefile (zip/URL)",
    )
    p.add_argument("--out", type=Path, default=REPO / "geodata", help="output directory")
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE_M,
        help="coverage simplification tolerance in metres (default %(default)s)",
    )
    p.add_argument(
        "--grid",
        type=float,
        default=DEFAULT_GRID_DEG,
        help="coordinate grid in degrees, 0 to keep full precision (default %(default)s)",
    )
    p.add_argument(
        "--drawing-tolerance",
        type=float,
        default=200.0,
        help="largest simplification of the drawing areas in metres (default %(default)s)",
    )
    p.add_argument(
        "--drawing-grid",
        type=float,
        default=1e-5,
        help="coordinate grid of the drawing areas in degrees (default %(default)s, about 1 m)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)  # geofetch reports its steps through logging
    handler.setFormatter(logging.Formatter("%(message)s"))
    geofetch.log.addHandler(handler)
    geofetch.log.setLevel(logging.INFO)
    geofetch.log.propagate = False
    try:
        build(args)
    except InputError as exc:
        sys.exit(f"error: {exc}")


def build(args: argparse.Namespace) -> None:
    """Write every geodata/ file and its README."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    adjacency: dict[str, tuple[int, int]] = {}

    def done(name: str, frame: pd.DataFrame) -> None:
        rows[name] = len(frame)
        print(f"wrote {name}: {len(frame):,} rows, {_mb(out / name)}")

    print("states")
    states = build_states(args.states)
    write_parquet(states, out / "states.parquet")
    done("states.parquet", states)

    print("population, gazetteer, ZCTA points")
    population = read_population(args.population)
    points = build_zcta_points(read_gazetteer(args.gazetteer), population, states)
    write_parquet(points, out / "zcta_points.parquet")
    done("zcta_points.parquet", points)

    print("counties")
    counties = build_counties(args.counties, points)
    write_parquet(counties, out / "counties.parquet")
    done("counties.parquet", counties)

    print("ZIP -> ZCTA crosswalk")
    crosswalk, dropped = build_crosswalk(args.crosswalk, points["zcta"])
    write_parquet(crosswalk, out / "zip_zcta.parquet")
    done("zip_zcta.parquet", crosswalk)

    polygons = []
    for key, name in ZCTA_OUTPUTS.items():
        print(f"ZCTA polygons -> {name}")
        srcs = args.zcta_ca if key == "ca" else args.zcta_ri_de_dc
        zcta, adjacency[name] = build_zcta_polygons(
            srcs, population, states, args.tolerance, args.grid
        )
        write_parquet(zcta, out / name)
        done(name, zcta)
        polygons.append(zcta)

    print(f"drawing areas -> {DRAWING_FILE}")
    drawing, filled = build_drawing(
        pd.concat(polygons, ignore_index=True), states, args.drawing_tolerance, args.drawing_grid
    )
    # coordinates as columns, byte-split: a third smaller than WKB for the same geometry
    write_parquet(
        drawing,
        out / DRAWING_FILE,
        geometry_encoding="geoarrow",
        use_byte_stream_split=True,
        compression_level=19,
    )
    done(DRAWING_FILE, drawing)

    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(render_readme(out, rows, args, adjacency, dropped, filled), encoding="utf-8")
        tmp.chmod(0o644)
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"wrote README.md; geodata total {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
