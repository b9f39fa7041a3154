"""Segments: which accounts each sales team covers, by rules, before any geography.

A :class:`Segment` is a name, a rule (:class:`patchmap.segments.rules.Rule`) and the
settings of its own plan (territories, balance, reps, units...). Segments form *layers*:
the ordinary segments make the base layer, where rules are tried in order and the first
that matches an account takes it; an ``overlay`` segment (a vertical team, say) is a layer
of its own on top, holding every account its rule matches. So every account is in exactly
one segment per layer it belongs to, and an account no base rule matches is rejected with
that reason, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from patchmap.errors import InputError
from patchmap.options import ARRAY_TABLES, LIBRARY, OptionError, for_table, resolve
from patchmap.segments.rules import Rule, RuleError

__all__ = ["BASE_LAYER", "NATIONAL", "Segment", "Segmentation", "segment_accounts"]

#: The layer of the segments that are not overlays.
BASE_LAYER = "base"
#: ``units = "national"``: territories drawn over accounts, without geography.
NATIONAL = "national"
#: Settings that need geography, refused for a national segment.
NO_GEOGRAPHY = ("locked", "within", "regions", "current")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.&+-]{0,62}$")


@dataclass
class Segment:
    """One sales team's slice of the accounts and the settings of its plan.

    ``partition`` holds the partition options (``territories``, ``balance``, ``reps``...,
    library units: see :func:`patchmap.options.for_table` ``("partition")``); ``units`` is
    a unit kind (``h3``, ``zcta``, ``county``), ``"national"`` (no geography: accounts are
    dealt to territories, see :mod:`patchmap.segments.national`) or None (the run's
    ``[units]``); ``capacity`` is the headcount rule of ``[export] capacity``.
    """

    name: str
    where: Rule
    overlay: bool = False
    units: str | None = None
    resolution: int | None = None
    partition: dict[str, Any] = field(default_factory=dict)
    capacity: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InputError(
                f"segment name {self.name!r}: expected 1-63 letters, digits, spaces or _ . & + -,"
                " starting with a letter or digit"
            )
        self.partition = _partition_settings(self.partition, self.label)
        if isinstance(self.where, str):
            try:
                self.where = Rule.parse(self.where)
            except RuleError as exc:
                raise InputError(f"{self.label}: {exc}") from None
        if self.national:
            given = [k for k in NO_GEOGRAPHY if self.partition.get(k) is not None]
            if given:
                raise InputError(
                    f"{self.label}: units = national (no geography) takes no {', '.join(given)}"
                )

    @property
    def layer(self) -> str:
        """``"base"``, or the segment's own name for an overlay."""
        return self.name if self.overlay else BASE_LAYER

    @property
    def national(self) -> bool:
        return self.units == NATIONAL

    @property
    def slug(self) -> str:
        """The segment's folder name: lower case, runs of other characters as ``-``."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")

    @property
    def label(self) -> str:
        """How messages name the segment and its rule."""
        return f"[[segment]] {self.name!r} (where = {str(self.where)!r})"


def _partition_settings(given: Mapping[str, Any], label: str) -> dict[str, Any]:
    """Partition options by library name, checked, the ones not given at their defaults."""
    opts = {o.name: o for o in for_table("partition").values()}
    unknown = sorted(set(given) - set(opts))
    if unknown:
        raise InputError(f"{label}: unknown partition option {unknown[0]!r}")
    try:
        return resolve(opts, dict(given), LIBRARY)
    except OptionError as exc:
        raise InputError(f"{label}: {exc}") from None


@dataclass
class Segmentation:
    """Which segment every account is in, layer by layer.

    ``base`` holds the base-layer segment of each account (``None`` where no rule
    matched: those accounts are rejected); ``overlays`` a boolean mask per overlay
    segment. Rows follow the accounts table given to :func:`segment_accounts`.
    """

    segments: list[Segment]
    base: np.ndarray
    overlays: dict[str, np.ndarray]

    @property
    def layers(self) -> list[str]:
        return [BASE_LAYER, *self.overlays]

    def segment(self, name: str) -> Segment:
        for s in self.segments:
            if s.name == name:
                return s
        raise KeyError(name)

    def mask(self, name: str) -> np.ndarray:
        """The accounts of segment ``name``."""
        seg = self.segment(name)
        return self.overlays[name] if seg.overlay else self.base == name

    @property
    def unmatched(self) -> np.ndarray:
        """Accounts no base-layer rule matched."""
        return pd.isna(self.base)

    def counts(self) -> dict[str, int]:
        """Accounts per segment, in the order the segments were given."""
        return {s.name: int(self.mask(s.name).sum()) for s in self.segments}

    def tally(self) -> str:
        """One line: accounts per segment (and how many matched none), layer by layer."""
        counts = self.counts()
        base = [f"{s.name} {counts[s.name]:,}" for s in self.segments if not s.overlay]
        line = "segments: " + ", ".join(base)
        if self.unmatched.any():
            line += f", no segment {int(self.unmatched.sum()):,} (rejected)"
        over = [f"{s.name} {counts[s.name]:,}" for s in self.segments if s.overlay]
        return line + (f"; overlays: {', '.join(over)}" if over else "")


def check_segments(segments: Sequence[Segment]) -> list[Segment]:
    """At least one base segment; names (and their folder names) unique."""
    segments = list(segments)
    if not segments:
        raise InputError("segments: none given")
    seen: dict[str, str] = {}
    for s in segments:
        if not isinstance(s, Segment):
            raise InputError(f"segments: expected Segment objects, got {type(s).__name__}")
        if s.slug in seen:
            raise InputError(
                f"segment {s.name!r}: the name repeats segment {seen[s.slug]!r} "
                "(names must differ in more than case and punctuation)"
            )
        seen[s.slug] = s.name
    if all(s.overlay for s in segments):
        raise InputError(
            "segments: every segment is an overlay; the base layer needs at least one "
            'segment without overlay = true (e.g. where = "true")'
        )
    return segments


def segment_accounts(accounts: pd.DataFrame, segments: Sequence[Segment]) -> Segmentation:
    """Evaluate every segment's rule over ``accounts`` and build the layers.

    A rule naming a column the accounts do not have, or comparing text with numbers, is
    an :class:`InputError` naming the segment and the rule.
    """
    segments = check_segments(segments)
    n = len(accounts)
    base = np.full(n, None, dtype=object)
    overlays: dict[str, np.ndarray] = {}
    for seg in segments:
        try:
            hit = seg.where.evaluate(accounts)
        except RuleError as exc:
            raise InputError(f"{seg.label}: {exc}") from None
        if seg.overlay:
            overlays[seg.name] = hit
        else:
            take = hit & pd.isna(base)
            base[take] = seg.name
    return Segmentation(segments, base, overlays)


def segments_from_tables(tables: Sequence[Mapping[str, Any]]) -> list[Segment]:
    """:class:`Segment` objects from checked ``[[segment]]`` tables (library names, complete:
    the keys a table left out already hold the ``[partition]``/``[export]`` values)."""
    keys = [for_table("partition")[k].name for k in ARRAY_TABLES["segment"]["partition"]]
    return check_segments(
        [
            Segment(
                name=t["name"],
                where=t.get("where") or "true",
                overlay=bool(t.get("overlay")),
                units=t.get("units"),
                resolution=t.get("resolution"),
                partition={k: t[k] for k in keys if k in t},
                capacity=t.get("capacity"),
            )
            for t in tables
        ]
    )
