"""Constraints a plan must satisfy, as small objects in the manner of GerryChain's.

The engine reads them to know what to optimize for, and the plan checks them after the
fact (``Plan.constraints``), so a later constraint (locked units, hard boundaries, rep
home bases) is one more object here plus the engine hook that honours it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from patchmap.partition.plan import Plan

__all__ = ["BalanceTolerance", "Constraint", "Contiguity", "check_all"]


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
