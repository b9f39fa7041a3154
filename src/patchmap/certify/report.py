"""A plan's certificate: its cut edges, the proven lower bound, the gap, and how to say it.

:class:`Certificate` is what ``--prove`` adds to a plan (``plan.certificate``): it is
worded for people by :meth:`Certificate.sentence` ("T01–T04: 33 cut edges, proven
optimal", "T01–T04: 66 cut edges, within 6% of optimal (bound 62)") and written for
tools by :func:`write_bound_json` as ``<plan stem>.bound.json``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from patchmap.io import write_text

__all__ = ["Certificate", "bound_json_path", "write_bound_json"]


@dataclass(frozen=True)
class Certificate:
    """``cut_edges`` of the plan; ``lower_bound`` on the cut edges of every plan meeting
    the same constraints (None when the model proved none can); ``plan_feasible`` (the
    plan itself meets them); ``status`` of the exact solve (``optimal``, ``time_limit``,
    ``infeasible``, ``too_large``); ``seconds`` spent; ``reason`` (why no plan can, when
    infeasible); ``labels`` (first and last territory label, for the sentence)."""

    cut_edges: int
    lower_bound: int | None
    plan_feasible: bool
    status: str
    seconds: float
    reason: str | None = None
    labels: tuple[str, str] = ("", "")

    @property
    def infeasible(self) -> bool:
        """True when the model proved that no plan meets the constraints."""
        return self.status == "infeasible"

    @property
    def gap(self) -> float | None:
        """``1 - lower_bound / cut_edges`` (0 when both are 0; None without a bound)."""
        if self.lower_bound is None:
            return None
        if self.cut_edges == 0:
            return 0.0
        return max(0.0, 1.0 - self.lower_bound / self.cut_edges)

    @property
    def proven_optimal(self) -> bool:
        """True when the plan meets its constraints and no such plan cuts fewer edges."""
        return (
            self.plan_feasible
            and self.lower_bound is not None
            and self.lower_bound >= self.cut_edges
        )

    def sentence(self) -> str:
        """One line for a person: the cut edges and how far from the best possible."""
        first, last = self.labels
        span = f"{first}–{last}: " if first else ""
        if self.infeasible:
            return f"{span}no plan meets the constraints (proven): {self.reason}"
        head = f"{span}{self.cut_edges} cut edges"
        if self.proven_optimal:
            return f"{head}, proven optimal"
        if not self.plan_feasible:
            return (
                f"{head}, but the plan misses its constraints; every plan meeting them cuts "
                f"at least {self.lower_bound} edges"
            )
        pct = math.ceil(100 * (self.gap or 0.0) - 1e-9)
        return f"{head}, within {pct}% of optimal (bound {self.lower_bound})"

    def to_dict(self) -> dict:
        """``cut_edges``, ``lower_bound``, ``gap``, ``proven_optimal``, ``seconds`` (plus
        ``status`` and, when infeasible, ``reason``): the ``.bound.json`` fields."""
        out = {
            "cut_edges": int(self.cut_edges),
            "lower_bound": None if self.lower_bound is None else int(self.lower_bound),
            "gap": None if self.gap is None else round(float(self.gap), 6),
            "proven_optimal": bool(self.proven_optimal),
            "seconds": round(float(self.seconds), 3),
            "status": self.status,
        }
        if self.reason:
            out["reason"] = self.reason
        return out


def bound_json_path(plan_path: str | os.PathLike) -> Path:
    """``<plan stem>.bound.json`` beside the plan (``plan.csv`` -> ``plan.bound.json``)."""
    p = Path(plan_path)
    return p.with_name(f"{p.stem}.bound.json")


def write_bound_json(cert: Certificate, plan_path: str | os.PathLike) -> Path:
    """Write the certificate as ``<plan stem>.bound.json`` beside the plan, atomically."""
    return write_text(json.dumps(cert.to_dict(), indent=2) + "\n", bound_json_path(plan_path))
