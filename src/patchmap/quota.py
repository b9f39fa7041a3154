"""Quota allocation: split a company target across territories by their potential.

Each territory's quota is proportional to its weight (revenue potential, or the primary
balance measure), held between a floor and a cap; whatever a floor adds or a cap removes
is redistributed over the territories still free, round after round, so the quotas
always sum to exactly the total.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from patchmap.errors import InputError
from patchmap.options import fraction_from_percent

__all__ = ["Quota", "allocate_quota", "parse_amount", "quota_table"]

_PCT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*%\s*$")


def parse_amount(value: float | str | None, mean: float, what: str = "amount") -> float | None:
    """An amount given as a number, or as a percentage of ``mean`` (``"80%"``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(f"{what}: expected an amount or a percentage like 80%, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
    else:
        text = str(value).strip().replace(",", "").replace("_", "")
        m = _PCT.match(text)
        try:
            v = fraction_from_percent(m.group(1)) * mean if m else float(text)
        except ValueError:
            raise InputError(
                f"{what}: expected an amount or a percentage like 80%, got {value!r}"
            ) from None
    if not np.isfinite(v) or v < 0:
        raise InputError(f"{what}: expected a non-negative amount, got {value!r}")
    return v


def allocate_quota(
    weights: Sequence[float] | np.ndarray | pd.Series,
    total: float,
    floor: float | str | None = None,
    cap: float | str | None = None,
    *,
    decimals: int | None = None,
) -> np.ndarray:
    """Split ``total`` in proportion to ``weights``, each share within [floor, cap].

    ``floor`` and ``cap`` are amounts or percentages of the mean share (``"80%"``). Shares
    pushed below the floor are raised to it and those above the cap cut to it, and the
    difference is spread over the others in proportion to their weights, until no share
    breaks a bound; the result sums to ``total`` (exactly, in units of ``10**-decimals``
    when ``decimals`` is given).
    """
    w = np.asarray(weights, dtype=float)
    k = len(w)
    if k == 0:
        raise InputError("quota: no territories to allocate to")
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError("quota: weights must be non-negative numbers")
    try:
        total = float(total)
    except (TypeError, ValueError):
        raise InputError(f"quota: total must be a number, got {total!r}") from None
    if not np.isfinite(total) or total < 0:
        raise InputError(f"quota: total must be a non-negative number, got {total!r}")
    mean = total / k
    lo = parse_amount(floor, mean, "quota floor")
    hi = parse_amount(cap, mean, "quota cap")
    lo = 0.0 if lo is None else lo
    hi = np.inf if hi is None else hi
    if lo > hi:
        raise InputError(f"quota: floor {lo:,.2f} is above cap {hi:,.2f}")
    if lo * k > total * (1 + 1e-12):
        raise InputError(
            f"quota: a floor of {lo:,.2f} for {k} territories exceeds the total {total:,.2f}"
        )
    if hi * k < total * (1 - 1e-12):
        raise InputError(
            f"quota: a cap of {hi:,.2f} for {k} territories is below the total {total:,.2f}"
        )
    q = np.zeros(k)
    fixed = np.zeros(k, dtype=bool)
    eps = 1e-9 * max(total, 1.0)
    for _ in range(2 * k + 1):
        free = ~fixed
        rest = total - q[fixed].sum()
        wf = w[free]
        q[free] = rest * (wf / wf.sum() if wf.sum() > 0 else np.full(len(wf), 1.0 / len(wf)))
        below = free & (q < lo - eps)
        above = free & (q > hi + eps)
        if not below.any() and not above.any():
            break
        # fix the side that breaks its bound by more; the other may resolve itself
        if (lo - q[below]).sum() >= (q[above] - hi).sum():
            q[below] = lo
            fixed |= below
        else:
            q[above] = hi
            fixed |= above
        if fixed.all():
            break
    return _round_to_total(q, total, decimals)


def _round_to_total(q: np.ndarray, total: float, decimals: int | None) -> np.ndarray:
    """Round to ``decimals`` keeping the sum (largest remainder); float residue otherwise."""
    if decimals is None:
        free = int(np.argmax(q))
        q = q.copy()
        q[free] += total - q.sum()
        return q
    scale = 10.0**decimals
    units = q * scale
    base = np.floor(units + 1e-9)
    short = int(round(total * scale - base.sum()))
    order = np.argsort(-(units - base), kind="stable")
    base[order[: max(short, 0)]] += 1
    return base / scale


@dataclass(frozen=True)
class Quota:
    """A quota rule: ``total`` split by ``basis`` (a summary column; potential, else the
    primary balance measure) within ``floor`` and ``cap`` (amounts or ``"80%"`` of the mean)."""

    total: float
    floor: float | str | None = None
    cap: float | str | None = None
    basis: str | None = None

    @classmethod
    def coerce(cls, value: Quota | float | dict | None) -> Quota | None:
        """A Quota from a number (the total), a mapping of its fields, or a Quota."""
        if value is None or isinstance(value, Quota):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"total", "floor", "cap", "basis"}
            if unknown or "total" not in value:
                raise InputError(
                    "quota: expected keys total and optionally floor, cap, basis, "
                    f"got {', '.join(sorted(value))}"
                )
            return cls(**value)
        if isinstance(value, bool):
            raise InputError(f"quota: expected a total amount, got {value!r}")
        try:
            return cls(float(value))
        except (TypeError, ValueError):
            raise InputError(f"quota: expected a total amount, got {value!r}") from None

    def basis_column(self, table: pd.DataFrame, balance: Sequence[str] = ()) -> str:
        """The column quotas follow: ``basis``; else potential; else the primary measure."""
        if self.basis is not None:
            if self.basis not in table.columns:
                raise InputError(f"quota: basis column {self.basis!r} not found")
            return self.basis
        for c in ("potential", *balance):
            if c in table.columns:
                return c
        raise InputError("quota: no potential or balance column to allocate by")

    def allocate(self, table: pd.DataFrame, balance: Sequence[str] = ()) -> np.ndarray:
        """Quota per row of a per-territory table, to the cent."""
        col = self.basis_column(table, balance)
        w = pd.to_numeric(table[col], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        return allocate_quota(w, self.total, self.floor, self.cap, decimals=2)


def quota_table(
    units: pd.DataFrame, plan, quota: Quota | float | dict, *, id_col: str = "unit_id"
) -> pd.DataFrame:
    """``territory, <basis>, quota`` for an engine plan over ``units`` (basis totals summed
    from the units by the plan's assignment; potential, else the primary measure)."""
    q = Quota.coerce(quota)
    cols = [c for c in ("potential", *plan.balance) if c in units.columns]
    col = q.basis if q.basis is not None else (cols[0] if cols else None)
    if col is None or col not in units.columns:
        raise InputError(f"quota: basis column {col!r} not found in the units")
    values = pd.to_numeric(units[col], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    labels = plan.assignment.reindex(units[id_col].astype(str)).to_numpy()
    tot = pd.Series(values).groupby(labels).sum().reindex(plan.labels).fillna(0.0)
    out = pd.DataFrame({"territory": plan.labels, col: tot.to_numpy()})
    out["quota"] = allocate_quota(out[col], q.total, q.floor, q.cap, decimals=2)
    return out
