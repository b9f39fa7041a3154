"""The result of partitioning: unit -> territory, with the metrics that judge it.

:func:`build_plan` measures a labelling (balance per column, Polsby–Popper, contiguity,
cut edges), checks the constraints and notes what misses its target; every way of
making a plan (fit, nested plans, realignment, evaluate) ends there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from patchmap.certify.report import Certificate, write_bound_json
from patchmap.io import side_path, write_csv
from patchmap.metrics import cut_edge_fraction, is_contiguous, polsby_popper_from_parts
from patchmap.notes import Note
from patchmap.partition.constraints import BalanceTolerance, Contiguity, check_all
from patchmap.partition.problem import territory_shares
from patchmap.units.adjacency import Adjacency

__all__ = ["Plan", "build_plan", "west_east_rank"]


@dataclass(eq=False)
class Plan:
    """A territory plan: ``assignment`` (unit id -> label such as ``T01``) and its metrics.

        ``territories`` has one row per territory: ``territory``, ``units``, each balance
        column's total and ``<col>_deviation`` (signed fraction from the mean),
        ``polsby_popper`` and ``contiguous``. ``max_deviation`` is the primary column's largest
        absolute deviation; ``cut_edge_fraction`` the share of adjacency edges between
        territories; ``bridges`` the island links the plan relies on.

        What-if plans add: ``homes`` (territory -> home unit of its rep) and ``reps`` (one row
        per rep with its home and travel distance); ``regions`` (territory -> region) for
        nested plans; ``moves`` (``unit_id, from, to, measure``) and ``moved_share`` (share of
        the primary column that changed territory) for a realignment, and ``relaxed`` (what gave
    way when the move budget and the tolerance could not both hold).
    """

    assignment: pd.Series
    adjacency: Adjacency
    territories: pd.DataFrame
    balance: list[str]
    max_deviation: float
    cut_edge_fraction: float
    mean_polsby_popper: float
    bridges: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    constraints: dict[str, bool] = field(default_factory=dict)
    seed: int = 0
    homes: pd.Series | None = None
    reps: pd.DataFrame | None = None
    regions: pd.Series | None = None
    moves: pd.DataFrame | None = None
    moved_share: float | None = None
    relaxed: str | None = None
    certificate: Certificate | None = None

    @property
    def cut_edges(self) -> int:
        """Number of adjacency edges between different territories (bridges included)."""
        codes = pd.factorize(self.assignment.to_numpy())[0]  # in adjacency order
        coo = sparse.triu(self.adjacency.matrix, k=1).tocoo()
        return int(np.count_nonzero(codes[coo.row] != codes[coo.col]))

    @property
    def lower_bound(self) -> int | None:
        """Proven lower bound on the cut edges of any plan meeting the same constraints
        (``prove=True``; None otherwise or when no plan can meet them)."""
        return None if self.certificate is None else self.certificate.lower_bound

    @property
    def gap(self) -> float | None:
        """``1 - lower_bound / cut_edges`` (``prove=True``; None otherwise)."""
        return None if self.certificate is None else self.certificate.gap

    @property
    def proven_optimal(self) -> bool:
        """True when ``prove=True`` proved that no plan meeting the constraints cuts fewer
        edges than this one."""
        return self.certificate is not None and self.certificate.proven_optimal

    @property
    def n_territories(self) -> int:
        """Number of territories."""
        return len(self.territories)

    @property
    def labels(self) -> list[str]:
        """Territory labels in order."""
        return self.territories["territory"].tolist()

    @property
    def contiguous(self) -> bool:
        """True when every territory is one connected piece."""
        return bool(self.territories["contiguous"].all())

    @property
    def max_deviations(self) -> dict[str, float]:
        """Largest absolute deviation from the mean, per balance column."""
        return {c: float(self.territories[f"{c}_deviation"].abs().max()) for c in self.balance}

    def to_frame(self) -> pd.DataFrame:
        """The plan table: exactly the columns ``unit_id, territory``, one row per unit."""
        return pd.DataFrame(
            {"unit_id": self.assignment.index.to_numpy(), "territory": self.assignment.to_numpy()}
        )

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write ``unit_id,territory`` to ``path`` atomically."""
        return write_csv(self.to_frame(), path)

    def summary(self) -> dict:
        """Plain-Python summary of the plan (JSON-serializable)."""
        return {
            "territories": self.n_territories,
            "units": int(len(self.assignment)),
            "balance": list(self.balance),
            "max_deviation": float(self.max_deviation),
            "max_deviations": self.max_deviations,
            "cut_edge_fraction": float(self.cut_edge_fraction),
            "mean_polsby_popper": float(self.mean_polsby_popper),
            "contiguous": self.contiguous,
            "non_contiguous_territories": int((~self.territories["contiguous"]).sum()),
            "bridges": int(len(self.bridges)),
            "constraints": dict(self.constraints),
            "notes": list(self.notes),
            "elapsed_s": round(float(self.elapsed_s), 3),
            "seed": int(self.seed),
        } | self._whatif_summary()

    def _whatif_summary(self) -> dict:
        out: dict = {}
        if self.certificate is not None:
            out["certificate"] = self.certificate.to_dict()
        if self.regions is not None:
            out["regions"] = int(self.regions.nunique())
        if self.moves is not None:
            out["moved_units"] = int(len(self.moves))
            out["moved_share"] = float(self.moved_share or 0.0)
        if self.reps is not None and "mean_distance_km" in self.reps.columns:
            out["mean_rep_distance_km"] = float(self.reps["mean_distance_km"].mean())
        return out

    def regions_frame(self) -> pd.DataFrame:
        """``territory, region`` (one row per territory), for a nested plan."""
        if self.regions is None:
            raise ValueError("this plan has no regions")
        return pd.DataFrame(
            {"territory": self.regions.index.to_numpy(), "region": self.regions.to_numpy()}
        )

    def write_side_files(self, plan_path: str | os.PathLike) -> dict[str, Path]:
        """Write what the plan knows beyond ``unit_id,territory`` beside ``plan_path``,
        named after it (``plan.csv`` -> ``plan.moves.csv``, so a side file never replaces
        an input such as the user's ``reps.csv``): ``moves`` (realignment), ``regions``
        (nested plans), ``reps`` (rep home bases), ``bound.json`` (``prove=True``).
        Returns ``{name: path}`` of the files written."""
        out: dict[str, Path] = {}
        if self.certificate is not None:
            out["bound"] = write_bound_json(self.certificate, plan_path)
        if self.moves is not None:
            out["moves"] = write_csv(self.moves, side_path(plan_path, "moves.csv"))
        if self.regions is not None:
            out["regions"] = write_csv(self.regions_frame(), side_path(plan_path, "regions.csv"))
        if self.reps is not None:
            km = [c for c in self.reps.columns if c.endswith("_km")]
            out["reps"] = write_csv(
                self.reps.round({c: 3 for c in km}), side_path(plan_path, "reps.csv")
            )
        return out

    def __repr__(self) -> str:
        return (
            f"Plan({self.n_territories} territories, {len(self.assignment)} units, "
            f"max_deviation={self.max_deviation:.3%}, cut_edge_fraction="
            f"{self.cut_edge_fraction:.3f}, mean_polsby_popper={self.mean_polsby_popper:.3f}, "
            f"contiguous={self.contiguous}, bridges={len(self.bridges)})"
        )


def west_east_rank(xy: np.ndarray | None, lab: np.ndarray, k: int, area: np.ndarray) -> np.ndarray:
    """Rank of each label 0..k-1 ordered west to east by area-weighted centroid (then
    north to south): a stable, seed-free order for territory numbers."""
    if xy is None:
        return np.arange(k)
    a = np.maximum(np.bincount(lab, weights=area, minlength=k), 1e-12)
    cx = np.bincount(lab, weights=area * xy[:, 0], minlength=k) / a
    cy = np.bincount(lab, weights=area * xy[:, 1], minlength=k) / a
    order = np.lexsort((-cy, cx))
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return rank


def build_plan(
    adjacency: Adjacency,
    lab: np.ndarray,
    W: np.ndarray,
    label_names: Sequence[str],
    notes: list[str],
    *,
    balance: Sequence[str],
    target: float,
    tolerance: float,
    seed: int = 0,
    reorder: bool = True,
    shares: Sequence[float] | None = None,
    extra: Sequence = (),
    primary_tol: float | None = None,
) -> Plan:
    """The :class:`Plan` of labels ``lab`` (codes into ``label_names``), measured.

    With ``reorder`` territories are numbered west to east. The primary column is
    checked against ``primary_tol`` (``target`` by default), the others against
    ``tolerance``; a column outside its band adds a note. ``extra`` constraints (locks,
    homes, groups, a move budget) are checked too.
    """
    k = len(label_names)
    share = territory_shares(shares, k)
    n = len(lab)
    area = adjacency.area_km2 if adjacency.area_km2 is not None else np.ones(n)
    a = np.bincount(lab, weights=area, minlength=k)
    if reorder:
        rank = west_east_rank(adjacency.xy_km, lab, k, area)
        order = np.argsort(rank)
        lab = rank[lab]
        share = share[order]
        a = a[order]
    lab_str = np.asarray(label_names, dtype=object)[lab]
    ids = np.asarray(adjacency.ids)
    assignment = pd.Series(lab_str, index=pd.Index(ids, name="unit_id"), name="territory")
    terr = pd.DataFrame({"territory": list(label_names)})
    terr["units"] = np.bincount(lab, minlength=k)
    for j, c in enumerate(balance):
        tot = np.bincount(lab, weights=W[:, j], minlength=k)
        terr[c] = tot
        terr[f"{c}_deviation"] = tot / (tot.sum() * share) - 1.0
    if adjacency.shared_km is not None:
        pp = polsby_popper_from_parts(
            lab, adjacency.area_km2, adjacency.perimeter_km, adjacency.shared_km, k
        )
    else:
        pp = np.full(k, np.nan)
    terr["polsby_popper"] = pp
    terr["contiguous"] = (
        is_contiguous(adjacency, lab).reindex(range(k), fill_value=False).to_numpy()
    )
    terr["area_km2"] = a
    dev0 = terr[f"{balance[0]}_deviation"].abs()
    plan = Plan(
        assignment=assignment,
        adjacency=adjacency,
        territories=terr,
        balance=list(balance),
        max_deviation=float(dev0.max()),
        cut_edge_fraction=cut_edge_fraction(adjacency, lab),
        mean_polsby_popper=float(np.nanmean(pp)) if np.isfinite(pp).any() else float("nan"),
        bridges=adjacency.bridges.copy(),
        notes=notes,
        seed=seed,
    )
    primary_tol = target if primary_tol is None else primary_tol
    for j, c in enumerate(balance):
        tol = primary_tol if j == 0 else tolerance
        worst = float(terr[f"{c}_deviation"].abs().max())
        if worst > tol + 1e-12:
            why = (
                "unit sizes or shape do not allow it"
                if j == 0
                else f"the primary {balance[0]!r} comes first, and the two pull apart"
            )
            notes.append(
                Note(
                    "balance_off",
                    f"balance column {c!r}: max deviation {worst:.2%} exceeds {tol:.2%} ({why})",
                    column=c,
                    primary=j == 0,
                    max_deviation=worst,
                    tolerance=tol,
                )
            )
    checks = [BalanceTolerance(balance[0], primary_tol)]
    checks += [BalanceTolerance(c, tolerance) for c in balance[1:]]
    checks += [Contiguity(), *extra]
    plan.constraints = check_all(checks, plan)
    return plan
