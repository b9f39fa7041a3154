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
    u["whitespace"] = u["potential"] * rng.uniform(0.2, 0.9, n)
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
    assert '"title":"RI, DE & DC"' in page  # data as JSON, shown with textContent
    assert "Ann \\u003cLee>" in page and "<Lee>" not in page  # no raw "<" from the data
    for key in ("score", "reach", "potential", "whitespace"):
        assert f'"key":"{key}"' in page  # a density layer per measure the units carry
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
    assert '"densities":[]' in page


def test_bad_plan_is_input_error(units, plan, tmp_path):
    with pytest.raises(InputError, match="no territory"):
        render_map(units, plan.iloc[1:], tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_california_zcta_map_under_2_5_mb(tmp_path):
    from patchmap.units.zcta import zcta_units

    ca = _with_measures(zcta_units(["CA"]), seed=1)
    out = render_map(ca, _kmeans_plan(ca, 20), tmp_path / "ca.html", title="California")
    size = out.stat().st_size
    assert 500_000 < size < 2_500_000, size


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_static_map(units, plan, tmp_path, fmt, magic):
    out = render_static(units, plan, tmp_path / f"map.{fmt}", title="Static", fmt=fmt)
    assert out.read_bytes()[:4] == magic
    assert out.stat().st_size > 10_000


def test_static_map_projection_centred_across_the_antimeridian(tmp_path):
    """Alaska with the western Aleutians (east of 180°): centred near -170°, not 0°."""
    from patchmap.metrics import equal_area_crs

    boxes = [(172.5, 52.5, 173.5, 53.0), (-176.0, 51.5, -175.0, 52.2), (-150.0, 60.0, -149.0, 61.5)]
    units = gpd.GeoDataFrame(
        {"unit_id": ["A", "B", "C"]}, geometry=[shapely.box(*b) for b in boxes], crs=4326
    )
    crs = equal_area_crs(units)
    assert -178 < crs.to_dict()["lon_0"] < -160
    proj = units.to_crs(crs)
    minx, _, maxx, _ = proj.total_bounds
    assert maxx - minx < 2_500_000  # one stretch of about 1,700 km, not the globe's width
    plan = pd.DataFrame({"unit_id": ["A", "B", "C"], "territory": ["T1", "T1", "T2"]})
    out = render_static(units, plan, tmp_path / "ak.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_map_across_the_antimeridian_opens_on_the_data(tmp_path):
    """Alaska with the western Aleutians: the page's bounds span about 30 degrees of
    longitude (units east of 180 moved below -180), not the whole world."""
    import json

    boxes = [(172.5, 52.5, 173.5, 53.0), (-176.0, 51.5, -175.0, 52.2), (-150.0, 60.0, -149.0, 61.5)]
    units = gpd.GeoDataFrame(
        {"unit_id": ["A", "B", "C"], "potential": [1.0, 2.0, 3.0]},
        geometry=[shapely.box(*b) for b in boxes],
        crs=4326,
    )
    plan = pd.DataFrame({"unit_id": ["A", "B", "C"], "territory": ["T1", "T1", "T2"]})
    page = render_map(units, plan, tmp_path / "ak.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r"var pm_data = (\{.*?\});\n", page).group(1))
    (s, w), (n, e) = data["bounds"]
    assert w == pytest.approx(172.5 - 360) and e == pytest.approx(-149.0)
    assert 50 < s < n < 62
    for lat, lon in data["terr"]["at"]:  # labels on the drawn copy of the world
        assert w <= lon <= e and s <= lat <= n


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
        self.page.set_default_timeout(10_000)
        self.page.set_default_navigation_timeout(60_000)

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


def _ready(page) -> None:
    page.wait_for_function("document.body.dataset.pmReady === '1'", timeout=20_000)


def test_map_in_headless_chromium_offline(browser, map_html, units, plan):
    territories = sorted(plan["territory"].unique())
    tab = OfflinePage(browser)
    try:
        page = tab.open(map_html)
        _ready(page)
        # a label for every territory, a table row for every territory
        labels = page.locator(".pm-label b").all_inner_texts()
        assert sorted(labels) == territories
        shown = page.evaluate(
            "() => Array.from(document.querySelectorAll('.pm-label'))"
            ".filter(l => l.style.visibility !== 'hidden').length"
        )
        assert shown >= K - 1, shown  # hidden only where two would overlap
        rows = page.locator(".pm-table tr.pm-row")
        assert rows.count() == K
        assert sorted(r.get_attribute("data-t") for r in rows.all()) == territories
        assert page.locator(".leaflet-pm-reps-pane path.leaflet-interactive").count() == 3
        summary = page.locator(".pm-summary").inner_text()
        assert summary.startswith(f"{K} territories") and "Revenue potential" in summary
        assert "Polsby" not in page.locator(".pm-summary").evaluate(
            "e => e.innerText"
        )  # in details

        # units answer the mouse while the territories are shown
        x, y = next(
            xy
            for i in np.argsort(-shapely.area(units.geometry.values))
            if _on_map(page, xy := _unit_point(page, int(i)))
        )
        page.mouse.move(x, y)
        page.mouse.move(x + 1, y + 1)
        assert "ZIP " in page.locator(".leaflet-tooltip").first.inner_text()

        # links across water: dashed, and their tooltip says why they are there
        links = page.evaluate(
            "() => pm_data.links.filter(l => pm_data.units.t[l[0]] === pm_data.units.t[l[1]])"
        )
        assert links, "Block Island and the other islands are joined by links"
        link = max(links, key=lambda lk: lk[6])
        ends = page.evaluate(
            f"() => {{ const l = {link}, m = pmApp.map;"
            " m.fitBounds([[l[2], l[3]], [l[4], l[5]]], {padding: [250, 250], animate: false});"
            " const a = m.latLngToContainerPoint([l[2], l[3]]),"
            " b = m.latLngToContainerPoint([l[4], l[5]]); return [a.x, a.y, b.x, b.y]; }"
        )
        assert page.locator(".leaflet-pm-links-pane path[stroke-dasharray]").count() >= 1
        box = page.locator(".folium-map").bounding_box()
        for f in np.linspace(0.3, 0.7, 41):  # along the dashes (their gaps take no mouse)
            page.mouse.move(
                box["x"] + ends[0] + f * (ends[2] - ends[0]),
                box["y"] + ends[1] + f * (ends[3] - ends[1]),
            )
        tip = page.locator(".leaflet-tooltip", has_text="Link across water").first.inner_text()
        assert "share no border" in tip and "km apart" in tip
        page.evaluate("() => { pmApp.map.fitBounds(pm_data.bounds, {animate: false}); }")

        # sorting, and a row click highlights its territory
        page.locator(".pm-table th", has_text="Revenue potential").click()
        values = [
            float(v)
            for v in page.locator(".pm-table tr.pm-row td.n").evaluate_all(
                "tds => tds.filter(td => td.cellIndex === 3).map(td => td.dataset.v)"
            )
        ]
        assert values == sorted(values)
        rows.nth(2).click()
        assert "pm-on" in rows.nth(2).get_attribute("class")

        # the search box finds a ZIP and opens its territory
        zip_ = units["unit_id"].iloc[10]
        page.fill(".pm-search input", zip_)
        page.press(".pm-search input", "Enter")
        popup = page.locator(".leaflet-popup-content")
        assert f"ZIP {zip_}" in popup.inner_text()
        assert plan.set_index("unit_id").loc[zip_, "territory"] in popup.inner_text()
        page.fill(".pm-search input", "99999x")
        page.press(".pm-search input", "Enter")
        assert "No ZIP" in page.locator(".pm-search .pm-msg").inner_text()

        # a density layer recolours the units and explains itself in the legend
        page.get_by_label("Whitespace density", exact=True).check()
        legend = page.locator(".pm-legend")
        assert legend.is_visible() and "not customers yet" in legend.inner_text()

        # basemap tiles only when asked for: then only tile images try the network
        tiled = render_map(units, plan, map_html.parent / "tiled.html", tiles=True)
        assert "openstreetmap" not in map_html.read_text(encoding="utf-8")
        _ready(tab.open(tiled))
    finally:
        tab.close()
    tiles = [e for e in tab.errors if "Failed to load resource" in e]
    assert not [e for e in tab.errors if e not in tiles], tab.errors
    assert tab.requests and {kind for kind, _ in tab.requests} == {"image"}, tab.requests
    assert len(tiles) <= len(tab.requests)


_BOXES_JS = """() => Array.from(document.querySelectorAll('.leaflet-control, .pm-header'))
  .filter(e => e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden')
  .map(e => { const r = e.getBoundingClientRect();
              return {name: e.className, x: r.left, y: r.top, r: r.right, b: r.bottom}; })
  .filter(b => b.r - b.x > 0 && b.b - b.y > 0)"""


def _overlaps(boxes: list[dict]) -> list[tuple[str, str]]:
    return [
        (a["name"], b["name"])
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a["x"] < b["r"] - 0.5
        and b["x"] < a["r"] - 0.5
        and a["y"] < b["b"] - 0.5
        and b["y"] < a["b"] - 0.5
    ]


def test_phone_layout_has_no_overlapping_controls(browser, map_html):
    tab = OfflinePage(browser, width=390, height=844)
    try:
        page = tab.open(map_html)
        _ready(page)
        for state in ("closed", "table open"):
            boxes = page.evaluate(_BOXES_JS)
            assert len(boxes) >= 6, boxes
            assert not _overlaps(boxes), (state, _overlaps(boxes))
            assert all(
                b["x"] >= 0 and b["r"] <= 390 and b["y"] >= 0 and b["b"] <= 844 for b in boxes
            )
            page.locator(".pm-table .pm-toggle").click()
        # the data fill most of the phone's width (no fixed desktop padding)
        width = page.evaluate(
            "() => { const m = pmApp.map, b = m.getBounds(), d = pm_data.bounds;"
            " return (d[1][1] - d[0][1]) / (b.getEast() - b.getWest()); }"
        )
        assert width > 0.6, width
    finally:
        tab.close()
    assert not tab.errors and not tab.requests


def _unit_point(page, i: int) -> tuple[float, float]:
    p = page.evaluate(f"() => pmApp.map.latLngToContainerPoint(pm_data.units.at[{i}])")
    box = page.locator(".folium-map").bounding_box()
    return box["x"] + p["x"], box["y"] + p["y"]


def _on_map(page, xy: tuple[float, float]) -> bool:
    """True when the point shows the map's units, not a panel."""
    return page.evaluate(f"() => document.elementFromPoint({xy[0]}, {xy[1]}).tagName") == "CANVAS"


def test_edit_mode_moves_units_and_downloads_the_plan(browser, map_html, units, plan, tmp_path):
    from patchmap.export import territory_summary

    # three large units, each moved to another territory
    area = shapely.area(units.geometry.values)
    picks = [int(i) for i in np.argsort(-area)[:3]]
    labels = sorted(plan["territory"].unique())
    moves = {}
    for i in picks:
        here = plan["territory"].iloc[i]
        moves[i] = labels[(labels.index(here) + 1) % len(labels)]
    tab = OfflinePage(browser, width=1300, height=900)
    try:
        page = tab.open(map_html)
        _ready(page)
        page.get_by_text("Edit plan").click()
        for i, to in moves.items():
            page.evaluate(
                f"() => {{ pmApp.map.setView(pm_data.units.at[{i}], 10, {{animate: false}}); }}"
            )
            page.wait_for_timeout(50)
            page.mouse.click(*_unit_point(page, i))
            assert "1 ZIP selected" in page.locator(".pm-edit").inner_text()
            page.select_option(".pm-edit select", str(labels.index(to)))
            page.get_by_role("button", name="Move", exact=True).click()
        with page.expect_download() as dl:
            page.get_by_role("button", name="Download plan.csv").click()
        path = tmp_path / "edited.csv"
        dl.value.save_as(path)
        shown = page.evaluate(
            "() => Array.from(document.querySelectorAll('.pm-table tr.pm-row')).map(r =>"
            " [r.dataset.t, ...Array.from(r.querySelectorAll('td.n')).map(td => +td.dataset.v)])"
        )
        headers = page.locator(".pm-table th.n").all_inner_texts()
        page.get_by_role("button", name="Undo").click()
        undone = page.evaluate("() => pmApp.planCsv()")
    finally:
        tab.close()
    assert not tab.errors and not tab.requests and not tab.dialogs

    original = plan.to_csv(index=False).splitlines()
    edited = path.read_text(encoding="utf-8").splitlines()
    assert edited[0] == "unit_id,territory" and len(edited) == len(original)
    diff = [n for n, (a, b) in enumerate(zip(original, edited, strict=True)) if a != b]
    assert diff == sorted(i + 1 for i in moves)
    for i, to in moves.items():
        assert edited[i + 1] == f"{units['unit_id'].iloc[i]},{to}"
    assert sum(a != b for a, b in zip(original, undone.splitlines(), strict=True)) == 2

    # the table's totals are the edited plan's, recomputed here
    ed = pd.read_csv(path, dtype=str)
    summary = territory_summary(units, ed, balance=["potential", "accounts"]).set_index("territory")
    numeric = [h.strip(" ▲▼") for h in headers]
    for label, *vals in shown:
        row = dict(zip(numeric, vals, strict=True))
        assert row["Accounts"] == summary.loc[label, "accounts"]
        assert row["Revenue potential"] == pytest.approx(summary.loc[label, "potential"], abs=0.5)
        assert row["vs target"] == pytest.approx(
            summary.loc[label, "potential_deviation"], abs=1e-6
        )


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
    for x in range(100, 1100, 60):  # unit tooltips and territory popups
        for y in range(100, 700, 60):
            page.mouse.move(x, y)
        page.mouse.click(x, 400)
    for q in (XSS, "T01", "no such"):
        if page.locator(".pm-search input").count():
            page.fill(".pm-search input", q)
            page.press(".pm-search input", "Enter")
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
        assert _exercise(page) > 3
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


def _table(page) -> dict[str, dict[str, float]]:
    """The territory table as {territory: {column: value}} (numeric columns, raw values)."""
    headers = [h.strip(" ▲▼") for h in page.locator(".pm-table th.n").all_inner_texts()]
    rows = page.evaluate(
        "() => Array.from(document.querySelectorAll('.pm-table tr.pm-row')).map(r =>"
        " [r.dataset.t, ...Array.from(r.querySelectorAll('td.n')).map(td => +td.dataset.v)])"
    )
    return {t: dict(zip(headers, vals, strict=True)) for t, *vals in rows}


def test_edit_mode_updates_deviation_and_quota_live(browser, units, plan, tmp_path):
    from patchmap.export import territory_summary

    quota = {"total": 6_000_000, "floor": "50%", "cap": "150%"}
    out = render_map(units, plan, tmp_path / "quota.html", quota=quota, tiles=False)
    i = int(np.argmax(shapely.area(units.geometry.values)))
    labels = sorted(plan["territory"].unique())
    here = plan["territory"].iloc[i]
    to = labels[(labels.index(here) + 1) % len(labels)]
    tab = OfflinePage(browser, width=1300, height=900)
    try:
        page = tab.open(out)
        _ready(page)
        before = _table(page)
        page.get_by_text("Edit plan").click()
        page.evaluate(
            f"() => {{ pmApp.map.setView(pm_data.units.at[{i}], 10, {{animate: false}}); }}"
        )
        page.wait_for_timeout(50)
        page.mouse.click(*_unit_point(page, i))
        page.select_option(".pm-edit select", str(labels.index(to)))
        page.get_by_role("button", name="Move", exact=True).click()
        after = _table(page)  # no download, no reload: the table follows the move
    finally:
        tab.close()
    assert not tab.errors and not tab.requests

    edited = plan.copy()
    edited.loc[i, "territory"] = to
    want = territory_summary(units, edited, balance=["potential", "accounts"], quota=quota)
    want = want.set_index("territory")
    for t in (here, to):
        assert after[t]["vs target"] != before[t]["vs target"]
        assert after[t]["Quota"] != before[t]["Quota"]
    for t, row in after.items():
        assert row["vs target"] == pytest.approx(want.loc[t, "potential_deviation"], abs=1e-6)
        assert row["Quota"] == pytest.approx(want.loc[t, "quota"], abs=0.02)
    assert sum(r["Quota"] for r in after.values()) == pytest.approx(quota["total"])


def test_compare_page_shows_both_plans(browser, units, plan, tmp_path):
    from patchmap.compare import compare_plans
    from patchmap.render import render_compare

    other = plan.copy()
    moved = other.index[:12]
    other.loc[moved, "territory"] = other["territory"].iloc[-1]
    cmp = compare_plans(plan, other, units=units, names=("before", "after"))
    out = render_compare(units, cmp, tmp_path / "compare.html")
    n_changed = int(cmp.changed.sum())
    tab = OfflinePage(browser)
    try:
        page = tab.open(out)
        _ready(page)
        control = page.locator(".leaflet-control-layers").inner_text()
        assert "Plan before: borders (dashed)" in control
        assert f"Changed units ({n_changed})" in control
        assert page.locator(".pm-table tr.pm-row").count() == other["territory"].nunique()
        assert sorted(page.locator(".pm-label b").all_inner_texts()) == sorted(
            other["territory"].unique()
        )
        summary = page.locator(".pm-summary").inner_text()
        assert "units changed" in summary and "before" in summary and "after" in summary
        assert page.locator(".pm-edit").count() == 0  # comparing, not editing
    finally:
        tab.close()
    assert not tab.errors and not tab.requests
    phone = OfflinePage(browser, width=390, height=844)
    try:
        page = phone.open(out)
        _ready(page)
        boxes = page.evaluate(_BOXES_JS)
        assert len(boxes) >= 6 and not _overlaps(boxes), _overlaps(boxes)
    finally:
        phone.close()
    assert not phone.errors and not phone.requests
