"""The territory engine: ``Partitioner(...).fit(units) -> Plan``, plus its constraints.

What-if planning: ``fit(reps=...)`` grows one territory around each rep's home,
``fit(locked=...)`` pins units, ``fit(within=..., regions=...)`` nests territories in
groups or regions, and ``Partitioner.realign(units, current, max_moved=...)`` rebalances
an existing plan moving as little as possible.
"""

from patchmap.partition.constraints import (
    BalanceTolerance,
    Constraint,
    Contiguity,
    HomeBases,
    LockedUnits,
    MoveBudget,
    Within,
)
from patchmap.partition.engine import Partitioner, check_locks, locked_conflicts
from patchmap.partition.hierarchy import group_territories, split_count
from patchmap.partition.plan import Plan
from patchmap.partition.reps import locate_homes, prepare_reps, read_reps

__all__ = [
    "BalanceTolerance",
    "Constraint",
    "Contiguity",
    "HomeBases",
    "LockedUnits",
    "MoveBudget",
    "Partitioner",
    "Plan",
    "Within",
    "check_locks",
    "group_territories",
    "locate_homes",
    "locked_conflicts",
    "prepare_reps",
    "read_reps",
    "split_count",
]
