"""Measure a plan as it is: balance, contiguity, cut edges and compactness, nothing changed.

This is what a plan edited by hand (the map's edit mode, a spreadsheet) is checked with:
the same metrics the territory engine reports for its own plans, measured on the same
unit graph (rook adjacency, islands bridged), so the two can be compared line by line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np

from patchmap.errors import InputError
from patchmap.export import plan_frame
from patchmap.metrics import cut_edge_fraction, territory_metrics
from patchmap.notes import Note
from patchmap.partition.plan import Plan
from patchmap.partition.problem import resolve_adjacency
from patchmap.units.adjacency import BRIDGE_FACTOR, build_adjacency

__all__ = ["evaluate_plan"]


def evaluate_plan(
    units: gpd.GeoDataFrame,
    plan: Any,
    balance: str | Sequence[str],
    *,
    tolerance: float | None = None,
    adjacency: Any = None,
    bridge_factor: float = BRIDGE_FACTOR,
) -> Plan:
    """The plan ``plan`` (a ``unit_id,territory`` table or PLAN.csv path) over ``units``
    measured as a :class:`~patchmap.partition.plan.Plan`; its assignment is the one given.

    ``balance`` names the measures (primary first). With ``tolerance`` (a fraction), the
    notes name every territory whose deviation exceeds it. ``adjacency`` is the unit graph
    contiguity and cut edges are measured on: an :class:`~patchmap.units.adjacency.Adjacency`,
    an edge list (``unit_a,unit_b`` file path or DataFrame, as ``partition --adjacency``
    takes), or None for the polygons' graph; ``bridge_factor`` joins its islands as
    ``partition`` does, so a plan is measured on the graph it was made on.
    """
    cols = [balance] if isinstance(balance, str) else list(balance)
    if not cols:
        raise InputError("evaluate: no balance column given")
    missing = [c for c in cols if c not in units.columns]
    if missing:
        raise InputError(f"units: balance column {missing[0]!r} not found")
    u = units.reset_index(drop=True)
    pf = plan_frame(plan, u)
    adjacency = resolve_adjacency(u, adjacency, "unit_id", bridge_factor)
    if adjacency is None:
        adjacency = build_adjacency(u, id_col="unit_id", bridge_factor=bridge_factor)
    labels = pf["territory"].to_numpy(dtype=object)
    terr = territory_metrics(u, labels, cols, adjacency)
    pp = terr["polsby_popper"].to_numpy(dtype=float)
    notes = []
    broken = terr.loc[~terr["contiguous"], "territory"].astype(str).tolist()
    if broken:
        notes.append(
            Note("not_contiguous", f"not one piece: {', '.join(broken)}", territories=broken)
        )
    if tolerance is not None:
        for c in cols:
            over = terr[terr[f"{c}_deviation"].abs() > tolerance + 1e-12]
            if len(over):
                worst = ", ".join(
                    f"{t} {100 * d:+.2f}%"
                    for t, d in zip(over["territory"], over[f"{c}_deviation"], strict=True)
                )
                notes.append(
                    Note(
                        "beyond_tolerance",
                        f"{c} beyond the {100 * tolerance:g}% tolerance: {worst}",
                        column=c,
                        tolerance=tolerance,
                        territories=over["territory"].astype(str).tolist(),
                    )
                )
    return Plan(
        assignment=pf.set_index("unit_id")["territory"],
        adjacency=adjacency,
        territories=terr,
        balance=cols,
        max_deviation=float(terr[f"{cols[0]}_deviation"].abs().max()),
        cut_edge_fraction=cut_edge_fraction(adjacency, labels),
        mean_polsby_popper=float(np.nanmean(pp)) if np.isfinite(pp).any() else float("nan"),
        bridges=adjacency.bridges.copy(),
        notes=notes,
    )
