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
# in a real browser, offline: one Chromium for the module, every non-file request aborted


class OfflinePage:
    """A Playwright page with the network cut: what it tried to fetch, errors, dialogs."""

    def __init__(self, browser, width: int = 1200, height: int = 800) -> None:
        self.requests: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(
            viewport={"width": width, "height": height}, accept_downloads=True
        )
        self.page.route("**/*", self._route)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        self.page.on("dialog", self._dialog)

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "about:", "blob:")):
            route.continue_()
        else:
            self.requests.append((route.request.resource_type, url))
            route.abort()

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: Path):
        self.page.goto(path.resolve().as_uri(), wait_until="load")
        return self.page

    def close(self) -> None:
        self.page.close()


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


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


#: Opens every tooltip and popup bound to any layer, so their HTML is parsed.
_OPEN_ALL_JS = """() => {
  let n = 0;
  for (const k of Object.keys(window)) {
    const m = window[k];
    if (!m || !(m instanceof L.Map)) continue;
    const each = (l) => {
      if (l.eachLayer) l.eachLayer(each);
      if (l.getTooltip && l.getTooltip()) { l.openTooltip(l.getCenter ? l.getCenter() : undefined); n++; }
      if (l.getPopup && l.getPopup()) { l.openPopup(); n++; }
    };
    m.eachLayer(each);
  }
  return n;
}"""

XSS = "<img src=x onerror=alert(1)>"


def test_map_in_headless_chromium_offline(browser, map_html, units, plan):
    tab = OfflinePage(browser)
    try:
        page = tab.open(map_html)
        page.wait_for_timeout(100)
        territories = sorted(plan["territory"].unique())
        assert page.locator(".leaflet-pane path, .leaflet-pane canvas").count() >= 1
        assert page.locator(".leaflet-pm-reps-pane path.leaflet-interactive").count() == 3
        assert (
            page.locator(".pm-summary").inner_text().startswith(f"{len(territories)} territories")
        )
        page.get_by_label("Score density", exact=True).check()
        page.wait_for_timeout(100)
        assert page.locator(".pm-legend").is_visible()
        # basemap tiles only when asked for: then only tile images try the network
        tiled = render_map(units, plan, map_html.parent / "tiled.html", tiles=True)
        assert "openstreetmap" not in map_html.read_text(encoding="utf-8")
        tab.open(tiled).wait_for_timeout(200)
    finally:
        tab.close()
    tiles = [e for e in tab.errors if "Failed to load resource" in e]
    assert not [e for e in tab.errors if e not in tiles], tab.errors
    assert tab.requests and {kind for kind, _ in tab.requests} == {"image"}, tab.requests
    assert len(tiles) <= len(tab.requests)


def _hostile_inputs(units: gpd.GeoDataFrame, plan: pd.DataFrame):
    """Units, plan and reps whose ids, labels, names and a column name are script payloads."""
    u = units.copy()
    ids = u["unit_id"].to_numpy(dtype=object).copy()
    for i in range(3):
        ids[i] = f"<img src=x onerror=alert('unit{i}')>"
    u["unit_id"] = ids
    col = "<img src=x onerror=alert('column')>"
    u[col] = u["potential"]
    hostile = {t: f"{t}<img src=x onerror=alert('{t}')>" for t in plan["territory"].unique()}
    p = pd.DataFrame({"unit_id": ids, "territory": plan["territory"].map(hostile).to_numpy()})
    first = sorted(hostile.values())[:2]
    reps = pd.DataFrame(
        {
            "rep_id": ["<img src=x onerror=alert('rep')>", "R2"],
            "name": [
                "<img src=x onerror=alert('name')>",
                "'\\\"</script><script>alert('n2')</script>",
            ],
            "lat": [41.82, 39.16],
            "lon": [-71.41, -75.52],
            "territory": first,
        }
    )
    return u, p, reps, col


def _exercise(page) -> int:
    """Tick every overlay, open every tooltip and popup; return how many were opened."""
    for box in page.locator(".leaflet-control-layers input").all():
        if box.is_visible():
            box.check()
            page.wait_for_timeout(50)
    n = page.evaluate(_OPEN_ALL_JS)
    page.mouse.move(600, 400)
    page.wait_for_timeout(100)
    return n


def test_user_strings_never_run_as_script(browser, units, plan, tmp_path):
    u, p, reps, col = _hostile_inputs(units, plan)
    out = render_map(
        u, p, tmp_path / "xss.html", reps=reps, title=XSS, balance=[col, "accounts"], tiles=False
    )
    tab = OfflinePage(browser)
    try:
        page = tab.open(out)
        assert _exercise(page) > 10
    finally:
        tab.close()
    assert not tab.dialogs, tab.dialogs
    assert not tab.errors, tab.errors
    assert not tab.requests, tab.requests


def test_compare_file_names_never_run_as_script(browser, units, plan, tmp_path):
    from tests.conftest import run_cli

    u, p, _, _ = _hostile_inputs(units, plan)
    u = u.drop(columns=[c for c in u.columns if c.startswith("<")])
    u.to_parquet(tmp_path / "units.parquet")
    other = p.copy()
    other.loc[:20, "territory"] = other["territory"].iloc[-1]
    a, b = (
        tmp_path / "<img src=x onerror=alert('a')>.csv",
        tmp_path / "<b onmouseover=alert(2)>b.csv",
    )
    p.to_csv(a, index=False)
    other.to_csv(b, index=False)
    res = run_cli("compare", a, b, "--units", tmp_path / "units.parquet", "--out", tmp_path / "cmp")
    assert res.returncode == 0, res.stderr
    tab = OfflinePage(browser)
    try:
        page = tab.open(tmp_path / "cmp" / "compare.html")
        assert _exercise(page) > 3
    finally:
        tab.close()
    assert not tab.dialogs, tab.dialogs
    assert not tab.errors, tab.errors
    assert not tab.requests, tab.requests
