"""The territory engine: ``Partitioner(...).fit(units) -> Plan``, plus its constraints.

What-if planning: ``fit(reps=...)`` grows one territory around each rep's home,
``fit(locked=...)`` pins units, ``fit(within=..., regions=...)`` nests territories in
groups or regions, and ``Partitioner.realign(units, current, max_moved=...)`` rebalances
an existing plan moving as little as possible.

The package's files are the algorithm's parts, each usable on its own:

- ``problem``: the unit graph, balance weights, bands and locks as flat arrays
- ``state``: the labelling and the running tallies every move keeps up to date
- ``objective``: balance bands, cut-edge and compactness gains, the plan score
- ``contiguity``: which units and blocks may leave a territory; repairs
- ``seeding``: first labellings (recursive bisection, capacitated starts at rep homes)
- ``balance`` and ``secondary``: balancing the primary and the secondary columns by
  boundary moves
- ``recom``: re-splitting a pair of territories, passing weight across a boundary
- ``flows``: balancing along paths of territories and along a planned flow between them
- ``relocate``: heavy units handed off, short territories moved next to the surplus
- ``refine``: greedy, pair-swap and Fiduccia–Mattheyses refinement
- ``tabu``: tabu search over single and paired moves inside the exact bands
- ``coarsen``: multilevel coarsening of large maps and projecting plans back
- ``search``: one search from a start (rounds of refinement and rebalancing)
- ``multilevel``: a large map solved multilevel, then V-cycles
- ``schedule``: the restarts, the anytime phase, and which path a map takes
- ``estimator`` (``Partitioner``), ``plan`` (``Plan``, ``build_plan``), ``hierarchy``
  (nested plans), ``realign`` (rebalancing a current plan), ``reps`` (rep homes),
  ``constraints`` (the checks a plan is judged by)
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
from patchmap.partition.contiguity import check_locks, locked_conflicts
from patchmap.partition.estimator import Partitioner
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
