"""National segments: deal accounts to territories without geography.

An enterprise book is a list of named accounts, not a patch of map: what matters is that
each rep's book carries a fair share of the potential (and of the accounts). The
:class:`AccountBalancer` splits accounts into K books:

1. **Longest processing time first** (LPT, Graham 1969): accounts in decreasing order of
   their primary measure, each to the book furthest below its target. For many accounts
   this is within one account of perfect on the primary measure.
2. **Local search**, in flat arrays: the worst book (largest deviation of any measure,
   secondaries counted only beyond their ``tolerance``) gives or takes one account, or
   swaps one for another book's, whichever lowers the worst deviation most; until no
   move helps or ``max_moves`` moves were made (the effort knob, deterministic).

Targets are equal shares of each measure, or shares in proportion to the reps'
``capacity`` when the reps table has one. Pinned accounts (named accounts) stay with
their owner; counted into the owner's load (``count_pinned=True``) or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from patchmap.errors import InputError
from patchmap.layers import measure_values
from patchmap.options import TOLERANCE

__all__ = ["AccountBalancer", "Books"]

#: Weight of a secondary measure's excess over its tolerance against the primary deviation.
_SECONDARY_WEIGHT = 10.0


@dataclass
class Books:
    """The result: ``assignment`` (account id -> territory) and one row per territory."""

    assignment: pd.Series
    territories: pd.DataFrame
    balance: list[str]
    moves: int = 0

    @property
    def max_deviation(self) -> float:
        """Largest absolute deviation of the primary measure from its target."""
        return float(self.territories[f"{self.balance[0]}_deviation"].abs().max())

    @property
    def max_deviations(self) -> dict[str, float]:
        return {c: float(self.territories[f"{c}_deviation"].abs().max()) for c in self.balance}


class AccountBalancer:
    """Split accounts into ``n_territories`` books balanced on ``balance`` (primary first).

    ``accounts`` as a balance column counts accounts; any other is a numeric account
    column. ``labels`` formats territory labels (given the 1-based number) unless reps
    name them.
    """

    def __init__(
        self,
        n_territories: int,
        balance: str | Sequence[str],
        *,
        tolerance: float = TOLERANCE,
        labels: str = "T{:02d}",
        max_moves: int | None = None,
    ) -> None:
        if isinstance(n_territories, bool) or not isinstance(n_territories, (int, np.integer)):
            raise InputError(f"territories must be an integer >= 1, got {n_territories!r}")
        if n_territories < 1:
            raise InputError(f"territories must be >= 1, got {n_territories}")
        cols = [balance] if isinstance(balance, str) else list(balance)
        if not cols or len(set(cols)) != len(cols):
            raise InputError(f"balance: expected distinct column names, got {balance!r}")
        self.n_territories = int(n_territories)
        self.balance = cols
        self.tolerance = float(tolerance)
        self.labels = labels
        self.max_moves = max_moves

    def weights(self, accounts: pd.DataFrame) -> np.ndarray:
        """The balance columns as an (accounts x measures) array; bad values raise."""
        cols = []
        for c in self.balance:
            if c == "accounts":
                cols.append(np.ones(len(accounts)))
                continue
            if c not in accounts.columns:
                raise InputError(
                    f"balance column {c!r} not found in the accounts "
                    f"(columns: {', '.join(map(str, accounts.columns[:15]))})"
                )
            v = measure_values(accounts, c)
            if (v < 0).any() or not np.isfinite(v).all():
                raise InputError(f"balance column {c!r} has negative or infinite values")
            cols.append(v)
        return np.column_stack(cols) if cols else np.zeros((len(accounts), 0))

    def fit(
        self,
        accounts: pd.DataFrame,
        *,
        reps: pd.DataFrame | None = None,
        pinned: pd.Series | None = None,
        count_pinned: bool = True,
    ) -> Books:
        """Books for ``accounts`` (with ``account_id``); ``reps`` (one book per rep,
        labelled by ``rep_id``, targets by ``capacity`` when given); ``pinned``
        (account id -> territory label) keeps those accounts with their owner."""
        k = self.n_territories
        if reps is not None:
            if len(reps) != k:
                raise InputError(
                    f"{reps.attrs.get('source', 'reps')}: {len(reps)} reps but {k} territories"
                )
            names = reps["rep_id"].astype(str).tolist()
            cap = reps["capacity"] if "capacity" in reps.columns else None
            share = (
                np.asarray(pd.to_numeric(cap, errors="coerce").fillna(0), dtype=float)
                if cap is not None and pd.to_numeric(cap, errors="coerce").notna().all()
                else np.ones(k)
            )
        else:
            names = [self.labels.format(i + 1) for i in range(k)]
            share = np.ones(k)
        share = share / share.sum()
        ids = accounts["account_id"].astype(str).to_numpy()
        W = self.weights(accounts)
        fixed = np.full(len(ids), -1, dtype=np.int64)
        if pinned is not None and len(pinned):
            pos = pd.Index(names).get_indexer(pinned.astype(str).to_numpy())
            if (pos < 0).any():
                bad = pinned.index[pos < 0][0]
                raise InputError(f"account {bad!r} is pinned to {pinned[bad]!r}, not a territory")
            at = pd.Index(ids).get_indexer(pinned.index.astype(str))
            if (at < 0).any():
                raise InputError(
                    f"pinned account {pinned.index[at < 0][0]!r} is not in the segment"
                )
            fixed[at] = pos
        lab, moves = _deal(W, k, share, fixed, count_pinned, self.tolerance, self.max_moves)
        assignment = pd.Series(np.asarray(names, dtype=object)[lab], index=pd.Index(ids,
                               name="account_id"), name="territory")  # fmt: skip
        counted = (fixed < 0) | count_pinned
        table = _books_table(W, lab, names, self.balance, share, counted)
        return Books(assignment, table, self.balance, moves)


def _books_table(
    W: np.ndarray, lab: np.ndarray, names: list[str], balance: list[str], share: np.ndarray,
    counted: np.ndarray,
) -> pd.DataFrame:  # fmt: skip
    """Accounts and totals per book (all its accounts); deviations of what was balanced."""
    k = len(names)
    out = pd.DataFrame({"territory": names, "accounts": np.bincount(lab, minlength=k)})
    for j, c in enumerate(balance):
        if c != "accounts":
            out[c] = np.bincount(lab, weights=W[:, j], minlength=k)
        tot = np.bincount(lab[counted], weights=W[counted, j], minlength=k)
        target = tot.sum() * share
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"{c}_deviation"] = np.where(target > 0, tot / target - 1.0, 0.0)
    return out


def _deal(
    W: np.ndarray, k: int, share: np.ndarray, fixed: np.ndarray, count_fixed: bool,
    tol: float, max_moves: int | None,
) -> tuple[np.ndarray, int]:  # fmt: skip
    """LPT on the primary measure, then single-account moves and swaps (see the module)."""
    n, m = W.shape
    lab = fixed.copy()
    free = fixed < 0
    counted = free | count_fixed
    total = W[counted].sum(axis=0)
    safe_total = np.where(total > 0, total, 1.0)
    Wn = W / safe_total  # each measure as a share of its total
    T = share[:, None] * np.ones((1, m))  # targets, in shares of the totals
    L = np.zeros((k, m))
    if count_fixed and (~free).any():
        np.add.at(L, lab[~free], Wn[~free])
    # 1. LPT: biggest primary first, each to the book furthest below its primary target
    order = np.flatnonzero(free)
    order = order[np.lexsort((order, -Wn[order].sum(axis=1), -Wn[order, 0]))]
    for i in order:
        j = int(np.argmin((L[:, 0] + Wn[i, 0]) / T[:, 0] + 1e-9 * L.sum(axis=1)))
        lab[i] = j
        L[j] += Wn[i]
    # 2. local search on the worst book
    tolv = np.r_[0.0, np.full(m - 1, tol)]
    weight = np.r_[1.0, np.full(m - 1, _SECONDARY_WEIGHT)]

    def cost(D: np.ndarray) -> np.ndarray:
        """Worst weighted excess over the books (last axis: measures), per candidate."""
        return (np.maximum(np.abs(D) - tolv, 0.0) * weight).max(axis=-1)

    budget = max_moves if max_moves is not None else 20 * n + 100
    moves = 0
    movable = free.copy()
    while moves < budget and k > 1:
        D = L / T - 1.0
        per_book = cost(D[:, None, :])[:, 0] if m else np.zeros(k)
        now = per_book.max()
        if now <= 1e-12:
            break
        a = int(np.argmax(per_book))
        mine = np.flatnonzero((lab == a) & movable)
        others = np.flatnonzero((lab != a) & movable)
        over = D[a] * weight  # direction: give when the worst measure is over, take when under
        c = int(np.argmax(np.abs(over) - tolv * weight))
        give = D[a, c] > 0
        best = (now - 1e-12, None)
        keep = np.ones(k, dtype=bool)
        keep[a] = False
        # worst of the books that do not change, for each possible partner b
        rest = np.array([per_book[keep & (np.arange(k) != b)].max(initial=0.0) for b in range(k)])
        if give and len(mine):  # move one of a's accounts to b
            na = L[a][None, :] - Wn[mine]  # (i, m)
            nb = L[None, :, :] + Wn[mine][:, None, :]  # (i, b, m)
            ca = cost(na / T[a] - 1.0)[:, None]
            cb = cost(nb / T[None] - 1.0)
            tot = np.maximum(np.maximum(ca, cb), rest[None, :])
            tot[:, a] = np.inf
            i, b = np.unravel_index(np.argmin(tot), tot.shape)
            if tot[i, b] < best[0]:
                best = (tot[i, b], ("move", mine[i], a, int(b)))
        if not give and len(others):  # take one account from its book b
            na = L[a][None, :] + Wn[others]
            bs = lab[others]
            nb = L[bs] - Wn[others]
            tot = np.maximum(np.maximum(cost(na / T[a] - 1.0), cost(nb / T[bs] - 1.0)), rest[bs])
            i = int(np.argmin(tot))
            if tot[i] < best[0]:
                best = (tot[i], ("move", others[i], int(bs[i]), a))
        if len(mine) and len(others):  # swap one of a's for one of another book's
            diff = Wn[others][None, :, :] - Wn[mine][:, None, :]  # (i, o, m): a gains diff
            bs = lab[others]
            na = L[a][None, None, :] + diff
            nb = L[bs][None, :, :] - diff
            tot = np.maximum(
                np.maximum(cost(na / T[a] - 1.0), cost(nb / T[bs][None] - 1.0)), rest[bs][None]
            )
            i, o = np.unravel_index(np.argmin(tot), tot.shape)
            if tot[i, o] < best[0]:
                best = (tot[i, o], ("swap", mine[i], others[o]))
        if best[1] is None:
            break
        step = best[1]
        if step[0] == "move":
            _, i, src, dst = step
            L[src] -= Wn[i]
            L[dst] += Wn[i]
            lab[i] = dst
        else:
            _, i, o = step
            b = lab[o]
            L[a] += Wn[o] - Wn[i]
            L[b] += Wn[i] - Wn[o]
            lab[i], lab[o] = b, a
        moves += 1
    return lab, moves
