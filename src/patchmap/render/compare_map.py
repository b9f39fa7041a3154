"""The map of two plans compared (``patchmap compare``), on the same page as the plan map:
units coloured by plan B with its labels, territory table and search, plan A's borders
dashed, the units whose territory changed shaded, and the comparison table in the summary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from patchmap.render.common import MAX_COORDS, format_metric, prepare_units
from patchmap.render.interactive import map_payload, write_page

__all__ = ["render_compare"]


def render_compare(
    units: gpd.GeoDataFrame,
    comparison: Any,
    out_path: str | os.PathLike,
    *,
    title: str | None = None,
    tiles: bool = False,
    max_coords: int = MAX_COORDS,
) -> Path:
    """Write a self-contained HTML map of two plans (a :class:`patchmap.compare.Comparison`):
    plan B's territories as on the plan map, plan A's borders dashed over them, the units
    whose territory changed shaded (each a layer to toggle), the comparison table in the
    summary panel. Nothing is fetched unless ``tiles``."""

    u = prepare_units(units)
    ids = u["unit_id"]
    la = comparison.labels_a.reindex(ids).astype(str).to_numpy(dtype=object)
    lb = comparison.labels_b.reindex(ids).astype(str).to_numpy(dtype=object)
    changed = comparison.changed.reindex(ids).fillna(False).to_numpy(dtype=bool)
    a, b = (str(n) for n in comparison.names)
    payload = map_payload(
        u,
        pd.DataFrame({"unit_id": ids, "territory": lb}),
        title=title or f"{a} vs {b}",
        tiles=tiles,
        max_coords=max_coords,
    )
    labels_a, codes_a = np.unique(la, return_inverse=True)
    payload["compare"] = {
        "names": [a, b],
        "labelsA": [str(x) for x in labels_a],
        "a": codes_a.ravel().tolist(),
        "changed": np.flatnonzero(changed).tolist(),
        "table": [
            [str(row[0])]
            + [format_metric(v, row[0], signed=i == 2) for i, v in enumerate(row[1:4])]
            for row in comparison.table.itertuples(index=False)
        ],
    }
    return write_page(payload, tiles, out_path)
