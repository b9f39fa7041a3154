"""Constraints a plan must satisfy, as small objects in the manner of GerryChain's.

The engine reads them to know what to optimize for, and the plan checks them after the
fact (``Plan.constraints``): locked units, rep home bases, a move budget and hard
boundaries (``within``) are each one object here plus the engine hook that honours it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import pandas as pd

if TYPE_CHECKING:
    from patchmap.partition.plan import Plan

__all__ = [
    "BalanceTolerance",
    "Constraint",
    "Contiguity",
    "HomeBases",
    "LockedUnits",
    "MoveBudget",
    "Within",
    "check_all",
]


@runtime_checkable
class Constraint(Protocol):
    """Anything with a ``name`` and a ``check(plan) -> bool``."""

    name: str

    def check(self, plan: Plan) -> bool:  # pragma: no cover - protocol
        ...


@dataclass(frozen=True)
class BalanceTolerance:
    """Every territory's total of ``column`` within ``tolerance`` (fraction) of the mean."""

    column: str
    tolerance: float

    @property
    def name(self) -> str:
        return f"balance:{self.column}<={self.tolerance:.2%}"

    def check(self, plan: Plan) -> bool:
        dev = plan.territories[f"{self.column}_deviation"].abs()
        return bool((dev <= self.tolerance + 1e-12).all())


@dataclass(frozen=True)
class Contiguity:
    """Every territory is one connected piece of the adjacency graph (bridges count)."""

    name: str = "contiguity"

    def check(self, plan: Plan) -> bool:
        return bool(plan.territories["contiguous"].all())


def check_all(constraints: list[Constraint], plan: Plan) -> dict[str, bool]:
    """Name -> satisfied, for each constraint."""
    return {c.name: c.check(plan) for c in constraints}


@dataclass(frozen=True, eq=False)
class LockedUnits:
    """These units (``unit id -> territory``) are in their territory."""

    assignment: pd.Series

    @property
    def name(self) -> str:
        return f"locked:{len(self.assignment)} units"

    def check(self, plan: Plan) -> bool:
        got = plan.assignment.reindex(self.assignment.index).astype(str)
        return bool((got.to_numpy() == self.assignment.astype(str).to_numpy()).all())


@dataclass(frozen=True, eq=False)
class HomeBases:
    """Each rep's home unit (``territory -> unit id``) is in the rep's territory."""

    homes: pd.Series

    @property
    def name(self) -> str:
        return f"home bases:{len(self.homes)} reps"

    def check(self, plan: Plan) -> bool:
        got = plan.assignment.reindex(self.homes.to_numpy()).astype(str).to_numpy()
        return bool((got == self.homes.index.astype(str).to_numpy()).all())


@dataclass(frozen=True, eq=False)
class MoveBudget:
    """At most ``max_moved`` (fraction) of ``weights`` changes territory from ``current``."""

    current: pd.Series
    weights: pd.Series
    max_moved: float

    @property
    def name(self) -> str:
        return f"moved<={self.max_moved:.2%}"

    def check(self, plan: Plan) -> bool:
        now = plan.assignment.reindex(self.current.index).astype(str).to_numpy()
        moved = now != self.current.astype(str).to_numpy()
        w = self.weights.reindex(self.current.index).to_numpy(dtype=float)
        return bool(w[moved].sum() <= self.max_moved * w.sum() + 1e-9 * max(w.sum(), 1.0))


@dataclass(frozen=True, eq=False)
class Within:
    """No territory spans two values of ``groups`` (one value per unit id)."""

    groups: pd.Series
    column: str = "group"

    @property
    def name(self) -> str:
        return f"within:{self.column}"

    def check(self, plan: Plan) -> bool:
        g = self.groups.reindex(plan.assignment.index)
        return bool((g.groupby(plan.assignment.to_numpy()).nunique(dropna=False) <= 1).all())
