"""Static maps (PNG, PDF, SVG) for slide decks: territories in an equal-area projection
suited to the data, labelled, with a legend."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from patchmap.errors import InputError
from patchmap.export import check_reps, dissolve_territories, territory_labels
from patchmap.io import atomic_path
from patchmap.metrics import equal_area_crs
from patchmap.render.colors import territory_colors
from patchmap.render.common import prepare_units, simplify_coverage
from patchmap.render.drawing import drawing_geometries


def render_static(
    units: gpd.GeoDataFrame,
    plan: Any,
    out_path: str | os.PathLike,
    *,
    title: str | None = None,
    fmt: str = "png",
    reps: pd.DataFrame | None = None,
    dpi: int = 150,
) -> Path:
    """Write a static map (PNG or PDF) for slide decks: coloured territories, labels, legend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fmt = fmt.lower().lstrip(".")
    if fmt not in ("png", "pdf", "svg"):
        raise InputError(f"map format: expected png or pdf, got {fmt!r}")
    u = prepare_units(units)
    labels = territory_labels(u, plan)
    shown = simplify_coverage(drawing_geometries(u), max_coords=400_000)
    terr = dissolve_territories(gpd.GeoDataFrame(geometry=shown, crs=4326), labels)
    terr["color"] = territory_colors(terr.geometry.values)

    crs = equal_area_crs(terr.geometry)
    proj = terr.to_crs(crs)
    minx, miny, maxx, maxy = proj.total_bounds
    aspect = (maxy - miny) / max(maxx - minx, 1e-9)
    width = 10.0
    fig, ax = plt.subplots(figsize=(width, min(max(width * aspect, 4.0), 14.0) + 0.8))
    proj.plot(ax=ax, color=proj["color"], edgecolor="#222222", linewidth=0.6)
    anchors = proj.geometry.representative_point()
    k = len(proj)
    fontsize = 9 if k <= 20 else 7 if k <= 50 else 5
    for x, y, t in zip(anchors.x, anchors.y, proj["territory"], strict=True):
        ax.annotate(
            str(t),
            (x, y),
            ha="center",
            va="center",
            fontsize=fontsize,
            fontweight="bold",
            color="#111111",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.6},
        )
    if reps is not None and len(reps):
        r = check_reps(reps)
        rp = gpd.GeoSeries(gpd.points_from_xy(r["lon"], r["lat"]), crs=4326).to_crs(crs)
        ax.scatter(rp.x, rp.y, s=22, c="#111111", edgecolors="white", linewidths=1.0, zorder=5)
    ax.set_axis_off()
    ax.set_aspect("equal")
    handles = [
        Patch(facecolor=c, edgecolor="#222222", label=str(t))
        for t, c in zip(proj["territory"], proj["color"], strict=True)
    ]
    ncol = 1 if k <= 20 else 2 if k <= 40 else 3
    if k <= 80:
        ax.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
            fontsize=8,
            ncol=ncol,
            title="Territory",
        )
    ax.set_title(title or f"{k} territories", fontsize=14, fontweight="bold")
    fig.tight_layout()
    out = Path(out_path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return out
