"""`patchmap run`: a plan file, with or without ``[[segment]]`` tables.

The layer above both: :func:`patchmap.pipeline.run_plan` chains the stages for one plan,
:func:`patchmap.segments.run.run_segments` splits the accounts by segment and plans each
with the same stages. Keeping the choice here keeps the pipeline free of segments (which
build on it), so neither imports the other in a circle.
"""

from __future__ import annotations

from patchmap.config import PlanConfig
from patchmap.pipeline import Echo, RunResult, run_plan
from patchmap.segments.run import run_segments

__all__ = ["run_config"]


def _quiet(_: str) -> None:
    pass


def run_config(config: PlanConfig, *, echo: Echo = _quiet) -> RunResult:
    """Every stage from one plan file; a plan with ``[[segment]]`` tables plans each segment."""
    if config.segments:
        return run_segments(config, echo=echo)
    return run_plan(config, echo=echo)
