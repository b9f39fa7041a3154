"""Why no plan can meet the bands: reasons that are proofs, not guesses.

:func:`explain` is called once the exact model (:mod:`.bound`) has proved an instance
infeasible, and words the first of these facts that holds (each one alone rules every
plan out, so the sentence is as true as the model's verdict):

- a unit heavier than every territory's cap;
- the units fixed to one territory (locks, a rep's home) already above its cap;
- contiguity: the units a territory can reach from its fixed units without crossing units
  fixed elsewhere weigh less than its floor (the issue's "the largest balanced set
  containing its home reaches only 0.91 of a share");
- a unit no territory can take once distance fixing is done (every territory able to
  hold it is too far away along the map);
- otherwise: the model, searched to the end, has no labelling meeting all bands at once
  (naming the columns when the primary alone could be met).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import connected_components

from patchmap.certify.model import Instance

__all__ = ["explain", "quick_reason"]


def _share(inst: Instance, j: int, c: int = 0) -> float:
    mid = (inst.lo[j, c] + inst.hi[j, c]) / 2
    return mid


def _pct(inst: Instance, c: int = 0) -> str:
    j = 0
    tol = (inst.hi[j, c] - inst.lo[j, c]) / (inst.hi[j, c] + inst.lo[j, c])
    return f"{100 * tol:.3g}%"


def _unit(ids, i: int) -> str:
    return str(ids[i]) if ids is not None else str(i)


def quick_reason(inst: Instance, ids=None) -> str | None:
    """The first direct proof that no plan meets ``inst`` (see the module docstring), or
    None when none of the direct facts holds."""
    w = inst.weights
    cols = inst.columns
    names = inst.names
    for c in range(w.shape[1]):
        cap = inst.hi[:, c].max()
        big = np.flatnonzero(w[:, c] > cap)
        if len(big):
            i = int(big[np.argmax(w[big, c])])
            return (
                f"unit {_unit(ids, i)} alone holds {w[i, c]:,.0f} {cols[c]}, "
                f"{w[i, c] / _share(inst, 0, c):.2f} of a territory's share: more than any "
                f"territory may hold (+{_pct(inst, c)})"
            )
    fx = inst.fixed
    for j in range(inst.k):
        own = fx == j
        for c in range(w.shape[1]):
            held = w[own, c].sum()
            if held > inst.hi[j, c]:
                return (
                    f"the units fixed to {names[j]} already hold {held:,.0f} {cols[c]}, "
                    f"{held / _share(inst, j, c):.2f} of its share: above its cap "
                    f"(+{_pct(inst, c)})"
                )
    if inst.contiguous:
        m = inst.matrix.tocsr()
        for j in range(inst.k):
            own = np.flatnonzero(fx == j)
            if not len(own):
                continue
            free = (fx == -1) | (fx == j)
            sub = m[free][:, free]
            idx = np.flatnonzero(free)
            _, comp = connected_components(sub, directed=False)
            where = {int(i): t for t, i in enumerate(idx)}
            reach = np.isin(comp, np.unique([comp[where[int(i)]] for i in own]))
            units = idx[reach]
            for c in range(w.shape[1]):
                most = w[units, c].sum()
                if most < inst.lo[j, c]:
                    what = "its home" if len(own) == 1 else "its fixed units"
                    return (
                        f"no plan puts {names[j]} within {_pct(inst, c)}: every connected set "
                        f"containing {what} (without crossing units fixed to other "
                        f"territories) reaches only {most / _share(inst, j, c):.2f} of a share "
                        f"of {cols[c]}"
                    )
            comps = np.unique([comp[where[int(i)]] for i in own])
            if len(comps) > 1:
                return (
                    f"the units fixed to {names[j]} cannot be joined into one territory: "
                    "units fixed to other territories separate them"
                )
    return None


def explain(inst: Instance, empty: np.ndarray | None = None, ids=None) -> str:
    """The reason an infeasible ``inst`` has no plan (see the module docstring);
    ``empty`` are units the model's fixing left without a territory."""
    why = quick_reason(inst, ids)
    if why is not None:
        return why
    if empty is not None and len(empty):
        i = int(empty[0])
        return (
            f"unit {_unit(ids, i)} cannot join any territory: every territory able to take "
            "it would have to reach it along a path heavier than a territory may be "
            f"(+{_pct(inst)}), so it would be cut off"
        )
    k = inst.k
    if inst.weights.shape[1] > 1:
        return (
            f"the exact model has no plan of {k} territories meeting every band at once "
            f"({', '.join(inst.columns)}), each in one piece"
        )
    return (
        f"the exact model has no plan of {k} contiguous territories within "
        f"{_pct(inst)} of the {inst.columns[0]} share: unit sizes and the map do not allow it"
        if inst.contiguous
        else f"the exact model has no plan of {k} territories within {_pct(inst)}"
    )
