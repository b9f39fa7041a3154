"""Drawing areas: ZIP areas wall to wall for maps (built once into geodata/), never measured."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from patchmap.render.drawing import drawing_geometries, fill_gaps


def test_fill_gaps_gives_each_gap_to_the_nearest_zcta():
    # two ZIP areas 1.1 km apart on a strip of land: the gap is split down the middle,
    # a sliver along the coast (40 m) is left alone
    land = shapely.box(0.0, 0.0, 0.02, 0.01)
    coast = shapely.box(0.0, 0.0, 0.02, 0.0096)
    zctas = gpd.GeoSeries(
        [
            shapely.intersection(shapely.box(0.0, 0.0, 0.005, 0.01), coast),
            shapely.intersection(shapely.box(0.015, 0.0, 0.02, 0.01), coast),
        ],
        crs=4326,
    )
    grown, stats = fill_gaps(zctas, land)
    assert shapely.coverage_is_valid(grown) and shapely.is_valid(grown).all()
    assert stats["filled_km2"] == pytest.approx(stats["gap_km2"], rel=0.1)
    left, right = grown
    assert left.contains(shapely.Point(0.0095, 0.005)) and right.contains(
        shapely.Point(0.0105, 0.005)
    )
    assert shapely.get_num_geometries(grown).tolist() == [1, 1]
    assert not left.contains(shapely.Point(0.002, 0.0099))  # the coastal sliver stays out
    for before, after in zip(zctas, grown, strict=True):
        assert shapely.area(shapely.difference(before, after)) < 1e-3 * before.area


@pytest.fixture(scope="module")
def small():
    from patchmap.units.zcta import zcta_units

    return zcta_units(["RI", "DE", "DC"])


def test_bundled_drawing_areas_cover_the_land_around_their_zcta(small):
    from patchmap import geodata

    drawn = drawing_geometries(small)
    changed = ~shapely.equals(drawn, small.geometry.values)
    assert changed.mean() > 0.9  # every bundled ZCTA has its drawing area
    assert shapely.coverage_is_valid(drawn) and shapely.is_valid(drawn).all()
    # each drawing area holds its ZCTA (up to the coarser simplification of a drawing)
    lost = shapely.area(shapely.difference(small.geometry.values, drawn))
    assert (lost <= 0.02 * shapely.area(small.geometry.values) + 1e-9).all()
    # and together they cover more of the states' land than the ZCTAs do
    land = geodata.states().set_index("state").geometry[["RI", "DE", "DC"]].union_all()
    cover = [shapely.area(shapely.intersection(land, shapely.union_all(g))) for g in
             (small.geometry.values, drawn)]  # fmt: skip
    assert cover[1] > cover[0]


def test_units_not_bundled_keep_their_polygons(small):
    moved = small.copy()
    moved.geometry = moved.geometry.translate(0.01, 0.0)  # not the bundled polygons any more
    assert shapely.equals(drawing_geometries(moved), moved.geometry.values).all()
    renamed = small.assign(unit_id=[f"X{i}" for i in range(len(small))])
    assert shapely.equals(drawing_geometries(renamed), small.geometry.values).all()


def test_california_territories_draw_whole():
    """A plan of contiguous territories draws with a few pieces each (islands), not dozens."""
    from sklearn.cluster import KMeans

    from patchmap.export import dissolve_territories
    from patchmap.units.zcta import zcta_units

    ca = zcta_units(["CA"])
    pts = ca.geometry.representative_point()
    lab = KMeans(20, n_init=1, random_state=0).fit_predict(np.column_stack([pts.x, pts.y]))
    labels = pd.Series(lab).map("T{:02d}".format).to_numpy()

    def pieces(geoms) -> int:
        g = gpd.GeoDataFrame(geometry=geoms, crs=4326)
        return int(shapely.get_num_geometries(dissolve_territories(g, labels).geometry).sum())

    before, after = pieces(ca.geometry.values), pieces(drawing_geometries(ca))
    assert after < before / 2, (before, after)
