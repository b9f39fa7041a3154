"""The territory engine: ``Partitioner(...).fit(units) -> Plan``, plus its constraints."""

from patchmap.partition.constraints import BalanceTolerance, Constraint, Contiguity
from patchmap.partition.engine import Partitioner
from patchmap.partition.plan import Plan

__all__ = ["BalanceTolerance", "Constraint", "Contiguity", "Partitioner", "Plan"]
