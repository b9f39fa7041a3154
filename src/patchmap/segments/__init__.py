"""Segments: territories by industry, size and geography, the way sales teams are organised.

- :mod:`~patchmap.segments.rules`: the safe rule language (``employees >= 1000 or ...``);
- :mod:`~patchmap.segments.segment`: :class:`Segment` and :func:`segment_accounts` (first
  match wins; overlays are layers of their own);
- :mod:`~patchmap.segments.named`: named accounts pinned to an owner;
- :mod:`~patchmap.segments.national`: books dealt without geography (LPT + local search);
- :mod:`~patchmap.segments.plan`: :func:`plan_segments`, one plan per segment;
- :mod:`~patchmap.segments.report`: the per-territory, per-segment, per-ZIP and
  per-account tables; :mod:`~patchmap.segments.run`: ``patchmap run`` with segments.

The package re-exports the foundations only (rules, segments, named accounts, books):
export and the pipeline read named accounts, so importing this package must not pull in
``plan``, ``report`` or ``run``, which sit above them; import those from their modules.
"""

from patchmap.segments.named import NamedAccounts, prepare_named, read_named
from patchmap.segments.national import AccountBalancer, Books
from patchmap.segments.rules import Rule, RuleError
from patchmap.segments.segment import Segment, Segmentation, segment_accounts

__all__ = [
    "AccountBalancer",
    "Books",
    "NamedAccounts",
    "Rule",
    "RuleError",
    "Segment",
    "Segmentation",
    "prepare_named",
    "read_named",
    "segment_accounts",
]
