"""The problem a search solves: the unit graph, the balance weights, the targets, the locks.

Everything here is checked input turned into flat arrays: :class:`Graph` (neighbour
lists and edge arrays), :class:`Problem` (weights, positions, areas, shares, tolerances,
locked units) and the validation that turns a unit table into them
(:func:`balance_weights`, :func:`prepare`, :func:`territory_shares`,
:func:`warm_codes`). The search parts (state, objective, balance, refine, ...) only read
a :class:`Problem`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy import sparse

from patchmap.errors import InputError, LockError
from patchmap.notes import Note
from patchmap.options import default
from patchmap.units.adjacency import (
    BRIDGE_FACTOR,
    Adjacency,
    build_adjacency,
    edge_adjacency,
    show_id,
)

__all__ = [
    "COMPACTNESS",
    "EFFORT",
    "MARGIN",
    "PROVE_TIME_LIMIT",
    "TARGET",
    "TOLERANCE",
    "Graph",
    "Problem",
    "balance_weights",
    "bridges_note",
    "input_notes",
    "prepare",
    "resolve_adjacency",
    "spectral_xy",
    "territory_shares",
    "warm_codes",
]

MARGIN = 0.9  # share of the primary target the search holds deviations within
TARGET = default("partition", "target")  # default band of the primary column (0.5%)
TOLERANCE = default("partition", "tolerance")  # default band of the secondary columns
EFFORT = default("partition", "effort")  # default length of the anytime search
PROVE_TIME_LIMIT = default("partition", "prove_time_limit")  # default budget of the proof
COMPACTNESS = 0.5  # default weight of the compactness term against one cut edge
MAX_BALANCE_TOTAL = 1e100  # a balance total beyond this overflows the squared deviations


class Graph:
    """Adjacency as Python lists (fast per-unit neighbour access in the local search)
    plus the undirected edges as two index arrays ``ei < ej`` (vector queries).

    With ``weighted`` the matrix holds integer edge weights (a coarse graph's count of
    the fine edges between two nodes) and each edge appears that many times in the
    neighbour lists and edge arrays, so every count the search makes (cut edges, gains,
    boundaries) is the weighted one without a separate code path."""

    def __init__(self, matrix: sparse.csr_matrix, weighted: bool = False) -> None:
        m = sparse.csr_matrix(matrix)
        self.matrix = m
        self.n = m.shape[0]
        self.weighted = weighted
        coo = sparse.triu(m, k=1).tocoo()
        if weighted:
            mult = np.rint(m.data).astype(np.int64)
            ind = np.repeat(m.indices, mult).tolist()
            ptr = np.r_[0, np.cumsum(mult)][m.indptr].tolist()
            rep = np.rint(coo.data).astype(np.int64)
            self.ei = np.repeat(coo.row.astype(np.int64), rep)
            self.ej = np.repeat(coo.col.astype(np.int64), rep)
        else:
            ind = m.indices.tolist()
            ptr = m.indptr.tolist()
            self.ei = coo.row.astype(np.int64)
            self.ej = coo.col.astype(np.int64)
        self.nbrs = [ind[ptr[i] : ptr[i + 1]] for i in range(self.n)]

    def subgraph(self, idx: np.ndarray) -> Graph:
        """The graph induced by the units ``idx`` (renumbered 0..len(idx)-1)."""
        return Graph(self.matrix[idx][:, idx], weighted=self.weighted)


@dataclass
class Problem:
    """One search's input: ``graph``; ``weights`` (units x balance columns, primary first);
    ``xy`` (km) and ``area`` (km2) for the compactness term; ``shares`` (each territory's
    target fraction of every column); ``tol`` (allowed deviation per column); ``locked``
    (territory code per unit, -1 free) and ``compactness`` (weight of the compactness
    term against one cut edge)."""

    graph: Graph
    weights: np.ndarray
    xy: np.ndarray
    area: np.ndarray
    shares: list[float]
    tol: list[float]
    locked: np.ndarray
    compactness: float

    @property
    def k(self) -> int:
        """Number of territories."""
        return len(self.shares)

    @classmethod
    def from_adjacency(
        cls,
        adjacency: Adjacency,
        weights: np.ndarray,
        *,
        shares: Sequence[float],
        primary_tol: float,
        tolerance: float,
        locked: np.ndarray,
        compactness: float,
        graph: Graph | None = None,
    ) -> Problem:
        """The problem on ``adjacency`` (its graph unless ``graph`` is given): positions
        and areas from its geometry (spectral stand-ins without), the primary held a
        little inside ``primary_tol`` (so no territory lands exactly on the limit) and the
        secondary columns within ``tolerance``."""
        n = adjacency.n_units
        xy = adjacency.xy_km if adjacency.xy_km is not None else spectral_xy(adjacency.matrix)
        area = adjacency.area_km2 if adjacency.area_km2 is not None else np.ones(n)
        tol = [primary_tol * MARGIN] + [tolerance] * (weights.shape[1] - 1)
        return cls(
            graph if graph is not None else Graph(adjacency.matrix), weights, xy, area,
            list(shares), tol, np.asarray(locked), compactness,
        )  # fmt: skip


def spectral_xy(matrix: sparse.spmatrix) -> np.ndarray:
    """Stand-in coordinates for graphs without geometry (two smoothest Laplacian vectors)."""
    from scipy.sparse.csgraph import laplacian
    from scipy.sparse.linalg import eigsh

    n = matrix.shape[0]
    if n < 4:
        return np.column_stack([np.arange(n, dtype=float), np.zeros(n)])
    lap = laplacian(sparse.csr_matrix(matrix, dtype=float))
    vals, vecs = eigsh(lap + sparse.identity(n) * 1e-9, k=3, sigma=-1e-6, which="LM")
    return vecs[:, np.argsort(vals)[1:3]] * np.sqrt(n)


def balance_weights(units: pd.DataFrame, balance: Sequence[str]) -> np.ndarray:
    """The balance columns as a float matrix (units x columns), every value checked:
    present, numeric, finite, non-negative, and each column summing above zero."""
    cols = []
    for c in balance:
        if c not in units.columns:
            raise InputError(
                f"balance column {c!r} not found (columns: {', '.join(map(str, units.columns))})"
            )
        s = units[c]
        if not (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)):
            num = pd.to_numeric(s, errors="coerce")
            bad = num.isna() & s.notna()
            if bad.any():
                raise InputError(f"balance column {c!r} is not numeric (e.g. {s[bad].iloc[0]!r})")
            s = num
        v = s.to_numpy(dtype=float, na_value=np.nan)
        if np.isnan(v).any():
            raise InputError(f"balance column {c!r} has {int(np.isnan(v).sum())} missing values")
        if not np.isfinite(v).all():
            raise InputError(f"balance column {c!r} has infinite values")
        if (v < 0).any():
            raise InputError(f"balance column {c!r} has negative values (e.g. {v[v < 0][0]:g})")
        with np.errstate(over="ignore"):
            total = v.sum()
        if not total <= MAX_BALANCE_TOTAL:  # an overflowing sum made every plan "100% off"
            raise InputError(
                f"balance column {c!r} is too large to add up (total beyond "
                f"{MAX_BALANCE_TOTAL:g}); rescale it, e.g. in thousands"
            )
        if total <= 0:
            raise InputError(f"balance column {c!r} sums to zero: nothing to balance")
        cols.append(v)
    return np.column_stack(cols)


def prepare(
    units: gpd.GeoDataFrame,
    adjacency: Adjacency | None,
    *,
    balance: Sequence[str],
    id_col: str | None,
    n_territories: int,
) -> tuple[np.ndarray, Adjacency]:
    """Validated balance weights and the adjacency graph (built from the polygons unless
    given; a given graph must list the same units in the same order)."""
    if not isinstance(units, (gpd.GeoDataFrame, pd.DataFrame)):
        raise InputError("units must be a GeoDataFrame of polygons with the balance columns")
    if len(units) == 0:
        raise InputError("units: no units (empty table)")
    col = id_col if id_col in units.columns else None
    if id_col is not None and col is None and adjacency is None:
        raise InputError(
            f"id column {id_col!r} not found (columns: {', '.join(map(str, units.columns))})"
        )
    W = balance_weights(units, balance)
    n = len(units)
    if n_territories > n:
        raise InputError(f"{n_territories} territories asked for but only {n} units to share")
    if adjacency is None:
        adjacency = build_adjacency(units, id_col=col)
    else:
        ids = units[col].to_numpy() if col else units.index.to_numpy()
        if adjacency.n_units != n or not np.array_equal(
            np.asarray(adjacency.ids, dtype=object), np.asarray(ids, dtype=object)
        ):
            raise InputError("adjacency ids do not match the units (build it from the same table)")
    return W, adjacency


def resolve_adjacency(
    units: gpd.GeoDataFrame | pd.DataFrame,
    adjacency,
    id_col: str | None,
    bridge_factor: float = BRIDGE_FACTOR,
) -> Adjacency | None:
    """``adjacency`` as an :class:`Adjacency`: given as one, kept; as an edge list (a file
    path or a DataFrame with ``unit_a,unit_b``), read against the units'
    ids, its pieces joined with ``bridge_factor`` (see
    :func:`~patchmap.units.adjacency.edge_adjacency`); None stays None."""
    if adjacency is None or isinstance(adjacency, Adjacency):
        return adjacency
    col = id_col if id_col is not None and id_col in units.columns else None
    if id_col is not None and col is None:
        raise InputError(
            f"id column {id_col!r} not found (columns: {', '.join(map(str, units.columns))})"
        )
    return edge_adjacency(units, adjacency, id_col=col, bridge_factor=bridge_factor)


def territory_shares(shares: Sequence[float] | None, k: int) -> np.ndarray:
    """Each territory's target fraction of the totals (equal when ``shares`` is None)."""
    if shares is None:
        return np.full(k, 1.0 / k)
    s = np.asarray(shares, dtype=float)
    if s.shape != (k,) or not np.isfinite(s).all() or (s <= 0).any():
        raise InputError(f"shares: expected {k} positive numbers, got {list(shares)!r}")
    return s / s.sum()


def warm_codes(
    ids: np.ndarray,
    names: Sequence[str],
    initial: pd.Series | Mapping | None,
    locked: pd.Series | Mapping | None,
    fixed: bool = False,
) -> tuple[np.ndarray | None, np.ndarray, list[str]]:
    """Integer codes for a warm start and for locked units (-1 = free), and the labels.

    A label not among ``names`` takes the place of the first name the mapping does not
    use; with ``fixed`` names (rep ids) every label must be one of them. A partial warm
    start is only a hint: its codes come back as None.
    """
    n = len(ids)
    label_names = list(names)
    index = pd.Index(ids)

    def codes(mapping, what):
        s = pd.Series(mapping)

        def fail(message: str, units) -> InputError:  # a lock names its units
            return LockError(message, units) if what == "locked" else InputError(message)

        unknown = ~s.index.isin(index)
        if unknown.any():
            raise fail(
                f"{what}: unit {show_id(s.index[unknown][0])} is not among the units",
                s.index[unknown][:1],
            )
        lab = pd.Series(-1, index=index)
        vals = s.astype(str)
        for v in vals.unique():
            if v not in label_names:
                if fixed:
                    raise fail(
                        f"{what}: territory {v!r} is not one of the territories "
                        f"({', '.join(label_names[:5])}{', ...' if len(label_names) > 5 else ''})",
                        vals.index[vals == v],
                    )
                if len(label_names) <= len(names) and v not in names:
                    # an unknown label takes the first name not used by the mapping
                    free = [x for x in label_names if x not in set(vals)]
                    if not free:
                        raise fail(
                            f"{what}: {vals.nunique()} territories named, more than the "
                            f"{len(names)} asked ({v!r} is one too many)",
                            vals.index[vals == v],
                        )
                    label_names[label_names.index(free[0])] = v
        pos = {v: i for i, v in enumerate(label_names)}
        lab.loc[vals.index] = vals.map(pos).to_numpy()
        return lab.to_numpy()

    init = codes(initial, "initial") if initial is not None else None
    lock = codes(locked, "locked") if locked is not None else np.full(n, -1)
    if init is not None and (init < 0).any():
        init = None  # a partial warm start is only a hint; seed fresh
    return init, lock, label_names


def input_notes(
    W: np.ndarray, ids: np.ndarray, adjacency: Adjacency, share: np.ndarray, target: float,
    column: str, unit_share: np.ndarray | None = None,
) -> list[str]:  # fmt: skip
    """What the input alone rules out: units heavier than any territory they could be in
    may hold (the largest share, or ``unit_share``: per unit, the largest share of the
    territories it may join, e.g. those of its ``within`` group), and the bridges joining
    separate pieces of the map."""
    notes: list[str] = []
    per = np.full(len(W), float(np.max(share))) if unit_share is None else unit_share
    goal = W[:, 0].sum() * per
    big = np.flatnonzero(W[:, 0] > goal * (1 + target))
    for u in big[np.argsort(-W[big, 0])][:5]:
        notes.append(
            Note(
                "heavy_unit",
                f"unit {show_id(ids[u])} alone holds {W[u, 0]:,.0f} {column} "
                f"({W[u, 0] / goal[u]:.0%} of its territory's share): its territory cannot "
                "meet the target",
                unit=ids[u],
                column=column,
                value=float(W[u, 0]),
                share=float(W[u, 0] / goal[u]),
            )
        )
    if len(adjacency.bridges):
        notes.append(bridges_note(adjacency))
    return notes


def within_note(group: str) -> Note:
    """The note of a plan whose territories are measured within their groups."""
    return Note(
        "within", f"within {group}: deviations are from each {group}'s own mean", group=group
    )


def bridges_note(adjacency: Adjacency) -> Note:
    """The note of a unit map in several pieces joined by bridge edges."""
    count, pieces = len(adjacency.bridges), int(adjacency.n_components_before)
    more = count - (pieces - 1)
    beside = (
        f": a shortest tree of {pieces - 1} joining them and {more} more between pieces "
        "about as near"
        if more > 0
        else ""
    )
    return Note(
        "bridges",
        f"{count} bridge edge(s) join {pieces} separate pieces of the unit map (islands or "
        f"gaps){beside}; see plan.bridges",
        count=count,
        pieces=pieces,
    )
