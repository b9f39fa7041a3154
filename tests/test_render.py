"""Maps: self-contained HTML checked in headless Chromium with the network cut, static maps."""

from __future__ import annotations

import os
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from patchmap.errors import InputError
from patchmap.export import dissolve_territories
from patchmap.render import render_map, render_static, territory_colors

K = 6
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _kmeans_plan(units: gpd.GeoDataFrame, k: int) -> pd.DataFrame:
    from sklearn.cluster import KMeans

    pts = units.geometry.representative_point()
    lab = KMeans(k, n_init=1, random_state=0).fit_predict(np.column_stack([pts.x, pts.y]))
    return pd.DataFrame({"unit_id": units["unit_id"], "territory": [f"T{i + 1:02d}" for i in lab]})


def _with_measures(units: gpd.GeoDataFrame, seed: int = 0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    n = len(units)
    u = units.copy()
    u["accounts"] = rng.poisson(5, n)
    u["customers"] = np.minimum(u["accounts"], rng.poisson(1, n))
    u["score"] = u["accounts"] * rng.uniform(10, 90, n)
    u["reach"] = u["accounts"] * rng.uniform(0, 5, n)
    u["potential"] = rng.gamma(2.0, 1e5, n)
    u["area_km2"] = u["land_km2"].clip(lower=0.01)
    for c in ("score", "reach", "potential"):
        u[f"{c}_density"] = u[c] / u["area_km2"]
    return u


@pytest.fixture(scope="module")
def units() -> gpd.GeoDataFrame:
    from patchmap.units.zcta import zcta_units

    return _with_measures(zcta_units(["RI", "DE", "DC"]))


@pytest.fixture(scope="module")
def plan(units) -> pd.DataFrame:
    return _kmeans_plan(units, K)


@pytest.fixture(scope="module")
def reps() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rep_id": ["R1", "R2", "R3"],
            "name": ["Ann <Lee>", "Bo", "Cy"],
            "lat": [41.82, 39.16, 38.9],
            "lon": [-71.41, -75.52, -77.03],
            "territory": ["T01", "T02", None],
        }
    )


@pytest.fixture(scope="module")
def map_html(units, plan, reps, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("map") / "map.html"
    render_map(units, plan, out, reps=reps, title="RI, DE & DC", tiles=False)
    return out


def test_map_is_self_contained(map_html):
    page = map_html.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)
    assert not re.search(r"<link[^>]*\bhref\s*=", page, re.I)
    assert "@import" not in page
    assert "Leaflet 1.9.3" in page or '"1.9.3"' in page  # the inlined library
    assert "url(images/" not in page  # Leaflet's CSS images are data URIs
    assert "RI, DE \\u0026amp; DC" in page  # title HTML-escaped (then JSON-escaped)
    assert "Ann &lt;Lee&gt;" in page and "<Lee>" not in page  # rep names escaped
    for layer in (
        "Territories",
        "Score density",
        "Reach density",
        "Potential density",
        "Rep home bases",
    ):
        assert f'"{layer}"' in page
    assert not [p for p in map_html.parent.iterdir() if p.name.startswith(".")]  # atomic write


def test_neighbouring_territories_never_share_a_colour(units, plan):
    terr = dissolve_territories(units, plan["territory"].to_numpy())
    geoms = terr.geometry.values
    colors = np.array(territory_colors(geoms))
    i, j = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = i < j
    assert pairs.any()
    assert (colors[i[pairs]] != colors[j[pairs]]).all()


def test_bare_polygons_render_without_density_layers(units, plan, tmp_path):
    bare = units[["unit_id", "geometry"]]
    out = render_map(bare, plan, tmp_path / "bare.html", tiles=False)
    page = out.read_text(encoding="utf-8")
    assert '"Territories"' in page and "Score density" not in page


def test_bad_plan_is_input_error(units, plan, tmp_path):
    with pytest.raises(InputError, match="no territory"):
        render_map(units, plan.iloc[1:], tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_california_zcta_map_under_10_mb(tmp_path):
    from patchmap.units.zcta import zcta_units

    ca = _with_measures(zcta_units(["CA"]), seed=1)
    out = render_map(ca, _kmeans_plan(ca, 20), tmp_path / "ca.html", title="California")
    size = out.stat().st_size
    assert 1_000_000 < size < 10_000_000, size


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_static_map(units, plan, tmp_path, fmt, magic):
    out = render_static(units, plan, tmp_path / f"map.{fmt}", title="Static", fmt=fmt)
    assert out.read_bytes()[:4] == magic
    assert out.stat().st_size > 10_000


def test_static_map_rejects_unknown_format(units, plan, tmp_path):
    with pytest.raises(InputError, match="png or pdf"):
        render_static(units, plan, tmp_path / "map.gif", fmt="gif")


# ---------------------------------------------------------------------------------------------
# in a real browser, offline


def _need_browser() -> None:
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed"
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} not found (Debian chromium: `make system-deps`)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


_DRAWN_JS = """() => {
  const out = {};
  for (const k of Object.keys(window)) {
    const v = window[k];
    if (!k.startsWith('patch_layer_') || !v || !v.eachLayer || !v._map) continue;
    v.eachLayer(l => {
      const f = l.feature;
      if (!f || !f.properties.c || !l._path) return;  // territory fills and borders
      const d = l._path.getAttribute('d') || '';
      const shown = document.body.contains(l._path) && d.length > 10;
      out[f.properties.t] = (out[f.properties.t] || 0) + (shown ? 1 : 0);
    });
  }
  return out;
}"""


def test_map_in_headless_chromium_offline(map_html, units, plan, tmp_path):
    _need_browser()
    from playwright.sync_api import sync_playwright

    requests: list[tuple[str, str]] = []
    errors: list[str] = []

    def cut_network(route):
        url = route.request.url
        if url.startswith(("file:", "data:", "about:", "blob:")):
            route.continue_()
        else:
            requests.append((route.request.resource_type, url))
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.route("**/*", cut_network)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on(
                "console",
                lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None,
            )
            page.goto(map_html.resolve().as_uri(), wait_until="load")

            drawn = page.evaluate(_DRAWN_JS)
            territories = sorted(plan["territory"].unique())
            assert sorted(drawn) == territories
            assert all(n >= 1 for n in drawn.values()), drawn
            fills = page.locator(".leaflet-overlay-pane path.leaflet-interactive")
            assert fills.count() == len(territories)
            assert page.locator(".leaflet-pane path").count() >= 2 * len(territories)  # + borders
            assert page.locator(".leaflet-pm-reps-pane path.leaflet-interactive").count() == 3

            # hovering a territory shows its tooltip; ticking a density layer shows its legend
            fills.first.hover(force=True)
            assert page.locator(".leaflet-tooltip").count() >= 1
            assert page.locator(".pm-legend").is_hidden()
            page.get_by_label("Score density", exact=True).check()
            page.wait_for_timeout(200)
            assert page.locator(".pm-legend").is_visible()
            assert "Score density" in page.locator(".pm-legend").inner_text()
            assert (
                page.locator(".pm-summary")
                .inner_text()
                .startswith(f"{len(territories)} territories")
            )

            shot = tmp_path / "map.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 20_000

            # with basemap tiles asked for, only tile images try the network, and fail quietly
            tiled = tmp_path / "tiled.html"
            render_map(units, plan, tiled, tiles=True)
            page.goto(tiled.resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(200)
        finally:
            browser.close()
    assert not [e for e in errors if "Failed to load resource" not in e], errors
    network_errors = [e for e in errors if "Failed to load resource" in e]
    assert len(network_errors) <= len(requests)
    kinds = {kind for kind, _ in requests}
    assert kinds <= {"image"}, requests
    assert not {k for k in kinds if k in ("script", "stylesheet", "font", "xhr", "fetch")}
    assert requests, "the tiled map should at least have tried to fetch tiles"
