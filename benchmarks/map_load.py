"""Map load benchmark: how fast the interactive map opens in headless Chromium.

Two maps: the CA demo (``patchmap demo``: 1,769 ZCTAs, 20 territories; target <= 1.5 s
from navigation to polygons drawn) and a lower-48 ZIP plan (every ZCTA of the 48
contiguous states and DC, ~33k units, 200 territories; target <= 5 s). Each is opened
``--repeat`` times in Debian's Chromium through Playwright with the network cut; the time
is the page's own mark (``window.patchmapReady``: ``performance.now()`` two animation
frames after the units, borders and labels were added, i.e. once they are painted). Also
the file size, the Python render time, and for the demo the pieces each territory draws
as, from the ZCTA polygons and from the wall-to-wall drawing areas. Writes the
``## Map load`` section of ``BENCHMARKS.md``.

    python benchmarks/map_load.py [--repeat 5] [--demo-dir DIR] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from _report import machine, write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Map load"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
LOWER48_K = 200


def open_times(path: Path, repeat: int, width: int = 1400, height: int = 900) -> list[float]:
    """Seconds from navigation to polygons drawn, one fresh page per run, network cut."""
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for _ in range(repeat):
            page = browser.new_page(viewport={"width": width, "height": height})
            page.route(
                "**/*",
                lambda r: r.continue_() if r.request.url.startswith(("file:", "data:", "blob:"))
                else r.abort(),
            )  # fmt: skip
            page.goto(path.resolve().as_uri(), wait_until="load", timeout=120_000)
            page.wait_for_function("window.patchmapReady !== undefined", timeout=120_000)
            out.append(page.evaluate("window.patchmapReady") / 1000.0)
            page.close()
        browser.close()
    return out


def demo(demo_dir: Path | None, tmp: Path) -> Path:
    """The demo's output directory (run ``patchmap demo`` unless one is given)."""
    if demo_dir is not None:
        return demo_dir
    out = tmp / "demo"
    subprocess.run([sys.executable, "-m", "patchmap", "demo", "--out", str(out)], check=True)
    return out


def pieces(units: gpd.GeoDataFrame, plan: pd.DataFrame) -> tuple[list[int], list[int]]:
    """Parts per territory as drawn from the ZCTA polygons and from the drawing areas."""
    from patchmap.export import dissolve_territories
    from patchmap.render.common import simplify_coverage
    from patchmap.render.drawing import drawing_geometries

    labels = plan.set_index("unit_id")["territory"].reindex(units["unit_id"]).to_numpy()
    counts = []
    for geoms in (units.geometry.values, drawing_geometries(units)):
        g = gpd.GeoDataFrame(geometry=simplify_coverage(geoms), crs=4326)
        counts.append(shapely.get_num_geometries(dissolve_territories(g, labels).geometry))
    return counts[0].tolist(), counts[1].tolist()


def lower48(tmp: Path) -> tuple[Path, int, float]:
    """A 200-territory map of every lower-48 ZCTA (K-means plan: only the map is timed)."""
    from sklearn.cluster import KMeans

    from patchmap.geodata import FIPS_TO_STATE
    from patchmap.render import render_map
    from patchmap.units.zcta import zcta_units

    states = [
        s for s in FIPS_TO_STATE.values() if s not in {"AK", "HI", "PR", "AS", "GU", "MP", "VI"}
    ]
    units = zcta_units(states)
    # a ZCTA across a state line is a unit in each state: keep one (plan ids are unique)
    units = units.drop_duplicates("unit_id").reset_index(drop=True)
    rng = np.random.default_rng(0)
    units["accounts"] = rng.poisson(3, len(units))
    units["potential"] = rng.gamma(2.0, 5e4, len(units))
    pts = units.geometry.representative_point()
    xy = np.column_stack([pts.x, pts.y])
    lab = KMeans(LOWER48_K, n_init=1, random_state=0).fit_predict(xy)
    plan = pd.DataFrame({"unit_id": units["unit_id"], "territory": [f"T{i + 1:03d}" for i in lab]})
    t0 = time.perf_counter()
    path = render_map(units, plan, tmp / "lower48.html", title="Lower 48, 200 territories")
    return path, len(units), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--demo-dir", type=Path, default=None, help="reuse a `patchmap demo` output")
    p.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = p.parse_args(argv)
    from patchmap.render import render_map

    load = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        dd = demo(args.demo_dir, tmp)
        units = gpd.read_parquet(dd / "units.parquet")
        plan = pd.read_csv(dd / "plan.csv", dtype=str)
        t0 = time.perf_counter()
        ca = render_map(units, plan, tmp / "ca.html", title="CA demo")  # as the demo draws it
        ca_render = time.perf_counter() - t0
        before, after = pieces(units, plan)
        times = open_times(ca, args.repeat)
        rows.append(
            ("CA demo (ZCTA)", len(units), plan["territory"].nunique(), ca, ca_render, times, 1.5)
        )
        big, n_big, big_render = lower48(tmp)
        times = open_times(big, args.repeat)
        rows.append(("lower 48 (ZCTA)", n_big, LOWER48_K, big, big_render, times, 5.0))

        lines = [
            "| map | units | territories | HTML (MB) | render (s) | open, median (s) | open, max (s) | target (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, n, k, path, render_s, ts, target in rows:
            lines.append(
                f"| {name} | {n:,} | {k} | {path.stat().st_size / 1e6:.2f} | {render_s:.1f} | "
                f"{statistics.median(ts):.2f} | {max(ts):.2f} | {target:g} |"
            )
    table = "\n".join(lines)
    print(table)
    print(f"pieces per territory, ZCTA polygons: {before} (total {sum(before)})")
    print(f"pieces per territory, drawing areas: {after} (total {sum(after)})")
    section = f"""{SECTION}

How fast the interactive map opens in headless Chromium (Debian's, through Playwright, network
cut): from navigation to the units, borders and labels painted (the page's
`window.patchmapReady` mark), {args.repeat} fresh pages each, desktop viewport 1400x900. The CA
demo is `patchmap demo`'s plan; the lower-48 map is every ZCTA of the 48 contiguous states and
DC (real polygons for CA, Voronoi cells of the ZCTA points elsewhere) with a 200-territory
K-means plan (only the map is timed). Targets: CA demo <= 1.5 s, lower 48 <= 5 s.

- date: {dt.date.today().isoformat()}
- machine: {machine(libs=["playwright", "shapely", "folium"])}
- command: `python benchmarks/map_load.py --repeat {args.repeat}`
- load average (1 min) when it started: {load:.1f} on {os.cpu_count()} cores

{table}

Pieces each CA demo territory draws as (parts of its dissolved outline; islands count):
from the ZCTA polygons {sum(before)} in all (most {max(before)}), from the wall-to-wall drawing
areas (`geodata/drawing_zcta.parquet`) {sum(after)} in all (most {max(after)}).
Per territory: before {before}; after {after}.
"""
    write_section(args.out, SECTION, section)
    print(f"wrote the {SECTION!r} section of {args.out}")


if __name__ == "__main__":
    main()
