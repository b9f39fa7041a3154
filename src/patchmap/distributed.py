"""Layers on Dask: the ``layers`` stage over a Parquet dataset larger than memory.

:func:`build_layers_dask` reads a Parquet file or a partitioned Parquet directory (a local
path or any fsspec URL) with ``dask.dataframe.read_parquet`` and runs the pandas stages on
each partition, on a ``distributed`` cluster: ingest (:func:`patchmap.accounts.validate_accounts`),
scoring with a model fitted once, placement (:func:`patchmap.layers.place_accounts`) against
units built once and broadcast to the workers, and per-unit sums. The table is never in one
place: what comes back is per-unit sums, the (small) rejects and a few counts.

:func:`patchmap.pipeline.layers_file` (``engine="dask"``) writes its result as it writes the
pandas engine's. The result is the pandas engine's (``load_accounts`` -> ``score_accounts`` ->
``build_layers``), value for value:

- row numbers are global: partition offsets come from the Parquet metadata;
- a table of at most ``sample_rows`` rows trains the look-alike model on every row, exactly
  as the pandas engine does; a larger one on a sample of labelled and unlabelled rows drawn
  from every partition (the pandas engine samples too, beyond 100k labelled rows);
- ``reach`` is normalized by the exact 99th percentile of the whole table (each partition
  sends only its top 1 %);
- per-unit sums are folded partition after partition in row order with ``np.add.at``: the
  same additions in the same order as the pandas engine's ``np.bincount``. Partial sums
  added up as a tree (``groupby().sum()``) would differ in the last bits.
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
import os
import pickle
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from patchmap.accounts import (
    IngestResult,
    duplicate_ids_error,
    empty_rejects,
    rename_columns,
    validate_accounts,
    zip_fallback_note,
)
from patchmap.errors import InputError
from patchmap.layers import (
    COUNTED_NOTES,
    MEASURES,
    Clock,
    LayerSpec,
    LayersResult,
    Layout,
    Survey,
    account_points,
    apply_chunk,
    check_sums,
    chunk_rejects,
    decide_units,
    finish_layers,
    fold_sums,
    layer_spec,
    prepare_accounts,
    survey_chunk,
    survey_geometry,
)
from patchmap.logs import log, progress
from patchmap.notes import merge_counts
from patchmap.options import error
from patchmap.scoring import (
    MEASURE_COLUMNS,
    LookalikeScorer,
    ScoringConfig,
    ScoringPlan,
    engagement,
    finish_card,
    given_card,
    given_measures,
    numeric_column,
    parse_outcome,
    reach_top,
    score_columns,
    scoring_config,
    scoring_notes,
    scoring_plan,
    with_measures,
)

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "DEFAULT_BLOCKSIZE",
    "MEMORY_BUDGET",
    "SAMPLE_ROWS",
    "DaskLayersResult",
    "NothingPlaced",
    "build_layers_dask",
    "cluster_size",
    "dask_client",
]

#: Total memory the default local cluster may use: scheduler, workers and this process.
MEMORY_BUDGET = 4 * 2**30
#: Kept out of the workers' share for this process, the scheduler and the nannies.
CLIENT_RESERVE = 2**30
#: Fewer workers rather than workers with less memory than this each.
MIN_WORKER_MEMORY = 2**30
#: Partition size asked of ``read_parquet`` (files split at row-group boundaries only).
DEFAULT_BLOCKSIZE = "64MiB"
#: Up to this many rows the model trains on the whole table (the pandas engine's model).
SAMPLE_ROWS = 100_000
#: Columns placement, aggregation and the placements file read (besides scoring's).
LAYER_COLUMNS = (
    "account_id",
    "lat",
    "lon",
    "zip",
    "zcta",
    "location_source",
    "source_row",
    "status",
    "is_customer",
    *MEASURE_COLUMNS,
)

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class NothingPlaced(InputError):
    """No row of the dataset is valid: ``rejects`` says why, row by row."""

    def __init__(self, source: str, n_read: int, rejects: pd.DataFrame) -> None:
        super().__init__(f"{source}: none of the {n_read} rows could be placed")
        self.source, self.n_read, self.rejects = source, n_read, rejects


@dataclass
class DaskLayersResult(LayersResult):
    """A :class:`~patchmap.layers.LayersResult` with counts in place of the placed accounts.

    ``rejects`` holds every row not placed (ingest rejects, then layer rejects), so
    ``n_read == n_placed + len(rejects)``; ``placed`` is empty. ``placements`` is where the
    placed accounts were written, when asked.
    """

    n_accounts: int = 0
    n_placed: int = 0
    placements: str | None = None
    model_card: dict[str, Any] = field(default_factory=dict)
    scoring_notes: list[str] = field(default_factory=list)

    @property
    def n_read(self) -> int:
        return self.n_accounts


#: Note makers of the counted notes partitions send (ingest's and the layers').
_COUNTED = {**COUNTED_NOTES, "zip_fallback": zip_fallback_note}

# ---------------------------------------------------------------- cluster


def _dask():
    try:
        import dask
        import dask.dataframe as dd
        import distributed
    except ImportError:
        raise error(
            "layers", "{engine=dask} needs dask and distributed: pip install 'patchmap[dask]'"
        ) from None
    return dask, dd, distributed


def cluster_size(n_workers: int | None = None, budget: int = MEMORY_BUDGET) -> tuple[int, int]:
    """(workers, memory limit per worker in bytes) for a local cluster within ``budget``.

    One single-threaded worker process per core (pandas and shapely hold the GIL), as many
    as get :data:`MIN_WORKER_MEMORY` each; the workers share ``budget`` less
    :data:`CLIENT_RESERVE` (never more than 80 % of the machine's memory).
    """
    import psutil

    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    pool = min(budget, int(0.8 * psutil.virtual_memory().total)) - CLIENT_RESERVE
    if n_workers is not None and n_workers < 1:
        raise InputError(f"n_workers must be at least 1, got {n_workers}")
    n = n_workers or max(1, min(cores, pool // MIN_WORKER_MEMORY))
    return n, max(pool // n, 256 * 2**20)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Client]:
    """A ``distributed.Client`` on the cluster at ``scheduler``, or on a new local cluster.

    The local cluster (closed on exit) is sized by :func:`cluster_size`: worker processes
    of one thread each, whose memory limits add up to less than :data:`MEMORY_BUDGET`.
    """
    _, _, distributed = _dask()
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise error(
                "layers", f"{{scheduler}} {scheduler}: cannot connect ({_first_line(exc)})"
            ) from None
        with client:
            yield client
        return
    n, limit = cluster_size(n_workers)
    with warnings.catch_warnings():
        # the scheduler's HTTP server moves off a taken port 8787 (another cluster): no news
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            memory_limit=limit,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,  # a task's error reaches the client, once
        )
    with cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------- what every task needs


@dataclass(frozen=True)
class _Job:
    """The parameters every partition task needs (small, pickled into each task)."""

    source: str
    column_map: dict[str, str]
    spec: LayerSpec
    n_total: int  # rows in the dataset
    cfg: ScoringConfig
    plan: ScoringPlan  # measures the input carries, engagement columns of reach
    sample_rows: int
    n_buckets: int = 8  # a power of two
    columns: frozenset[str] | None = None  # columns the layers pass keeps (None: all)
    sums: tuple[str, ...] = ()  # the user's own numeric columns summed into the units
    placements: str | None = None  # directory (URL) for per-partition placement files
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def top_k(self) -> int:
        """Values each partition sends for an exact global 99th percentile."""
        return math.ceil(0.01 * self.n_total) + 2


def _ingest(part: pd.DataFrame, offset: int, job: _Job) -> IngestResult | None:
    """Validate and geocode one partition; row numbers are the dataset's (None if empty)."""
    if len(part) == 0:
        return None
    df = rename_columns(part.rename(columns=lambda c: str(c).strip()), job.column_map, job.source)
    return validate_accounts(df, job.source, first_row=offset + 1)


# ---------------------------------------------------------------- scoring, as score_accounts


def _top_values(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest values as (distinct values, counts)."""
    if x.size > k:
        x = np.partition(x, x.size - k)[x.size - k :]
    return np.unique(x, return_counts=True)


def _quantile_from_top(
    sketches: Sequence[tuple[np.ndarray, np.ndarray]], n: int, q: float = 0.99
) -> float:
    """``np.quantile(x, q)`` (linear) of ``n`` values from each partition's top values.

    The union of every partition's top ``k`` holds the whole table's top ``k``, so the two
    order statistics the linear rule interpolates are exact, and so is the arithmetic:
    numpy's virtual index ``(n - 1) q`` and its two-sided lerp.
    """
    values = np.concatenate([s[0] for s in sketches])
    counts = np.concatenate([s[1] for s in sketches])
    uniq, inverse = np.unique(values, return_inverse=True)
    total = np.bincount(inverse, weights=counts).astype("int64")
    desc, cum = uniq[::-1], np.cumsum(total[::-1])

    def at(rank: int) -> float:  # ascending rank in the whole table
        return float(desc[np.searchsorted(cum, n - 1 - rank, side="right")])

    h = (n - 1) * q
    if h >= n - 1:
        return at(n - 1)
    lo = math.floor(h)
    g = h - lo
    a, b = at(lo), at(lo + 1)
    d = b - a
    return b - d * (1 - g) if g >= 0.5 else a + d * g


@dataclass
class _Scoring:
    """What a partition needs to be scored exactly as ``score_accounts`` scores the table."""

    plan: ScoringPlan
    tops: dict[str, float]  # the whole table's reach normalisers
    scorer: LookalikeScorer | None = None
    card: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def apply(self, accounts: pd.DataFrame) -> pd.DataFrame:
        """``accounts`` with ``p_win``, ``score``, ``potential`` (unless given) and ``reach``:
        :func:`patchmap.scoring.with_measures` of this partition."""
        given = given_measures(accounts, self.plan, self.tops)
        predicted = None
        if self.scorer is not None:
            base = accounts.drop(columns=list(self.plan.kept))
            p_win = self.scorer.predict_proba(base)
            predicted = score_columns(p_win, self.scorer.predict_deal_size(base))
        return with_measures(accounts, self.plan, given, predicted)

    def __getstate__(self) -> dict[str, Any]:
        # The fitted model travels as one pickled blob: arrays that distributed ships out of
        # band can arrive unaligned, which scipy's B-splines (the logistic model) refuse.
        state = dict(self.__dict__)
        state["scorer"] = pickle.dumps(self.scorer, protocol=4)  # arrays copied in
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["scorer"] = pickle.loads(state["scorer"])
        self.__dict__.update(state)

    def columns(self) -> set[str]:
        """Input columns scoring reads (features, rules columns, engagement, kept)."""
        cols = set(self.plan.kept) | set(self.plan.weights)
        return cols | (self.scorer.input_columns() if self.scorer is not None else set())


def _fit_scoring(
    train_parts: list[pd.DataFrame | None], job: _Job, tops: dict[str, float]
) -> _Scoring:
    """Fit the look-alike model (or the rules) once, on the gathered training rows."""
    frames = [p for p in train_parts if p is not None and len(p)]
    train = pd.concat(frames, ignore_index=True) if frames else None
    if train is None:
        raise InputError(f"{job.source}: no rows to score")
    train = train.drop(columns=list(job.plan.kept))
    scorer = LookalikeScorer(job.cfg)
    result = scorer.fit(train)
    card = dict(result.model_card, n_accounts=job.n_total, fit_sample=len(train))
    return _Scoring(job.plan, tops, scorer, card, list(result.notes))


# ---------------------------------------------------------------- pass 1: survey


def _survey(part: pd.DataFrame, i: int, offset: int, job: _Job, region_geom=None) -> dict[str, Any]:
    """Validate a partition; gather training rows, reach percentiles and its layers survey
    (:func:`patchmap.layers.survey_chunk`: states, H3 cells)."""
    out: dict[str, Any] = {"n_read": len(part), "n_valid": 0, "train": None, "tops": {},
                           "states": None, "cells": None, "extra": None}  # fmt: skip
    ingest = _ingest(part, offset, job)
    if ingest is None:
        return out
    acc = ingest.accounts
    out["n_valid"] = len(acc)
    if job.plan.needs_model:
        out["train"] = _training_rows(acc, i, len(part), job)
    out["tops"] = {c: _top_values(engagement(acc, c), job.top_k) for c in job.plan.weights}
    if job.spec.needs_survey:
        _, lat, lon = account_points(acc)
        survey = survey_chunk(job.spec, lat, lon, region_geom)
        out.update(states=survey.states, cells=survey.cells, extra=survey.extra)
    return out


def _training_rows(acc: pd.DataFrame, i: int, n_part: int, job: _Job) -> pd.DataFrame:
    """Every row of a small table; else up to this partition's share of ``sample_rows``
    labelled rows and as many unlabelled ones (outcome and deal size validated here)."""
    cfg = job.cfg
    labelled = np.zeros(len(acc), dtype=bool)
    if cfg.outcome in acc.columns:
        labelled = parse_outcome(acc, cfg).notna().to_numpy()
    if cfg.deal_size and cfg.deal_size in acc.columns:
        numeric_column(acc, cfg.deal_size, "deal size")
    if job.n_total <= job.sample_rows:
        return acc
    cap = math.ceil(job.sample_rows * n_part / job.n_total)
    rng = np.random.default_rng([cfg.seed, i])
    take = np.zeros(len(acc), dtype=bool)
    for mask in (labelled, ~labelled):
        idx = np.flatnonzero(mask)
        take[rng.choice(idx, cap, replace=False) if idx.size > cap else idx] = True
    return acc[take]


def _ingest_rejects(part: pd.DataFrame, i: int, offset: int, job: _Job) -> pd.DataFrame:
    """A partition's ingest rejects."""
    ingest = _ingest(part, offset, job)
    return empty_rejects() if ingest is None else ingest.rejects


def _survey_stats(result: dict[str, Any]) -> dict[str, Any]:
    """The small part of a survey result, for the client."""
    return {k: result[k] for k in ("n_read", "n_valid", "tops", "states")}


# ---------------------------------------------------------------- pass 2: layers


def _layers_part(
    part: pd.DataFrame,
    i: int,
    offset: int,
    job: _Job,
    scoring: _Scoring,
    layout: Layout,
    cells: np.ndarray | None,
) -> dict[str, Any]:
    """Ingest, score and place one partition; its per-unit contributions and rejects."""
    ingest = _ingest(part, offset, job)
    small = {
        "n_read": len(part),
        "n_placed": 0,
        "ingest_rejects": None,
        "layer_rejects": None,
        "notes": [],
        "ingest_notes": [],
        "prep_notes": [],
    }
    if ingest is None:
        return {"small": small, "contrib": None, "hashes": [np.empty(0, "uint64")] * job.n_buckets}
    hashes = _id_hashes(ingest, job.n_buckets)
    accounts = ingest.accounts
    if job.columns is not None:
        accounts = accounts[[c for c in accounts.columns if c in job.columns]]
    accounts = scoring.apply(accounts).reset_index(drop=True)
    prep = prepare_accounts(accounts, job.spec.kind, job.sums)
    chunk = apply_chunk(job.spec, layout, prep, cells)
    placed = chunk.placed
    if job.placements:
        cols = [
            c
            for c in ("source_row", "account_id", "unit_id", "lat", "lon", "status", *MEASURES)
            if c in placed.columns
        ]
        placed[cols].to_parquet(
            f"{job.placements}/part.{i:05d}.parquet",
            index=False,
            storage_options=job.storage_options or None,
        )
    small.update(
        n_placed=len(placed),
        ingest_rejects=ingest.rejects,
        layer_rejects=chunk.rejects,
        notes=chunk.notes,
        ingest_notes=ingest.notes,
        prep_notes=prep.notes,
    )
    return {"small": small, "contrib": chunk.contrib, "hashes": hashes}


def _fold(
    acc: dict[str, np.ndarray] | None, result: dict[str, Any], n_units: int,
    sums: tuple[str, ...] = (),
) -> dict[str, np.ndarray]:  # fmt: skip
    """:func:`patchmap.layers.fold_sums` of a partition task's contributions."""
    return fold_sums(acc, result["contrib"], n_units, sums)


def _small(result: dict[str, Any]) -> dict[str, Any]:
    return result["small"]


# ---------------------------------------------------------------- duplicate account ids


def _id_hashes(ingest: IngestResult, n_buckets: int) -> list[np.ndarray]:
    """64-bit hashes of the partition's account ids, sorted, split in ``n_buckets``."""
    ids = pd.concat(
        [ingest.accounts["account_id"], ingest.rejects["account_id"]], ignore_index=True
    )
    ids = ids[ids.notna() & (ids != "")]
    h = np.sort(pd.util.hash_pandas_object(ids, index=False).to_numpy())
    bits = np.uint64(64 - int(math.log2(n_buckets)))  # bucket = the top bits of the hash
    return np.split(h, np.searchsorted(h >> bits, np.arange(1, n_buckets, dtype="uint64")))


def _repeated(*arrays: np.ndarray) -> np.ndarray:
    """Hashes that occur more than once across the arrays."""
    h = np.sort(np.concatenate(arrays)) if arrays else np.empty(0, "uint64")
    return np.unique(h[1:][h[1:] == h[:-1]])


def _ids_with_hash(part: pd.DataFrame, offset: int, job: _Job, wanted: np.ndarray) -> pd.DataFrame:
    """Rows of a partition whose account id hashes to one of ``wanted``."""
    ingest = _ingest(part, offset, job)
    if ingest is None:
        return pd.DataFrame(
            {"row": pd.Series(dtype="int64"), "account_id": pd.Series(dtype="string")}
        )
    rows = pd.concat(
        [
            ingest.accounts[["source_row", "account_id"]].rename(columns={"source_row": "row"}),
            ingest.rejects[["row", "account_id"]],
        ],
        ignore_index=True,
    )
    rows = rows[rows["account_id"].notna() & (rows["account_id"] != "")]
    h = pd.util.hash_pandas_object(rows["account_id"], index=False).to_numpy()
    return rows[np.isin(h, wanted)]


def _check_duplicates(
    client: Client, parts: list, offsets: list[int], job: _Job, buckets: list
) -> None:
    """Raise InputError naming duplicated account ids across partitions, as ingest does."""
    from dask import delayed

    repeated = [
        client.submit(
            _repeated,
            *[client.submit(operator.getitem, b, j, pure=False) for b in buckets],
            pure=False,
        )
        for j in range(job.n_buckets)
    ]
    wanted = np.concatenate(client.gather(repeated))
    if wanted.size == 0:
        return
    found = client.gather(
        client.compute(
            [
                delayed(_ids_with_hash)(p, off, job, wanted)
                for p, off in zip(parts, offsets, strict=True)
            ]
        )
    )
    rows = pd.concat(found, ignore_index=True).sort_values("row", kind="stable")
    duplicated = duplicate_ids_error(job.source, rows["account_id"], rows["row"])
    if duplicated is not None:  # None: 64-bit hash collisions only
        raise duplicated


# ---------------------------------------------------------------- reading


def _read(source: str, blocksize: str | int | None, storage_options: Mapping[str, Any] | None):
    """(dask DataFrame, per-partition delayed frames, partition lengths) of a Parquet source."""
    dask, dd, _ = _dask()
    # plain pandas dtypes, as pandas.read_parquet gives them (the engines must agree)
    with dask.config.set({"dataframe.convert-string": False}):
        try:
            ddf = dd.read_parquet(
                source,
                blocksize=blocksize,
                storage_options=dict(storage_options) if storage_options else None,
            )
            parts = ddf.to_delayed()
        except Exception as exc:  # any reader failure is the user's file, in one line
            raise InputError(f"{source}: cannot read as Parquet ({_first_line(exc)})") from None
    return ddf, parts


def _partition_lengths(client: Client, ddf, n_parts: int) -> list[int]:
    """Rows per partition, from the Parquet metadata when dask exposes it, else counted."""
    try:
        from dask.dataframe.dask_expr._expr import Lengths, Literal

        known = Lengths(ddf.expr).optimize()
        if isinstance(known, Literal) and len(known.value) == n_parts:
            return [int(n) for n in known.value]
    except Exception:  # internal API moved: count instead
        pass
    return [int(n) for n in client.compute(ddf.map_partitions(len)).result()]


# ---------------------------------------------------------------- the engine


def build_layers_dask(
    source: str | os.PathLike,
    *,
    units: str = "zcta",
    resolution: int = 7,
    states: Sequence[str] | str | None = None,
    column_map: Mapping[str, str] | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    blocksize: str | int | None = DEFAULT_BLOCKSIZE,
    scoring: ScoringConfig | Mapping[str, Any] | None = None,
    placements: str | os.PathLike | None = None,
    storage_options: Mapping[str, Any] | None = None,
    sample_rows: int = SAMPLE_ROWS,
    sums: Sequence[str] | None = None,
) -> DaskLayersResult:
    """The layers stage (ingest, score, place, sum per unit) on a Dask cluster.

    ``source``: a Parquet file or directory of Parquet files (local or an fsspec URL).
    ``scheduler``: address of a running cluster; by default a local cluster sized by
    :func:`cluster_size` runs for the call. ``placements``: a directory to write the placed
    accounts to (one Parquet file per partition). Other parameters as
    :func:`patchmap.layers.build_layers` (``sums``: the user's own numeric columns) and
    :func:`patchmap.scoring.score_accounts`.
    Returns the same units as the pandas engine; rejects cover ingest and placement.
    """
    clock = Clock()
    spec = layer_spec(units, resolution, states)
    cfg = scoring_config(scoring)
    if sample_rows < 1:
        raise InputError(f"sample_rows must be at least 1, got {sample_rows}")
    source = os.fspath(source)
    ddf, parts = _read(source, blocksize, storage_options)
    meta = rename_columns(
        ddf._meta.rename(columns=lambda c: str(c).strip()), dict(column_map or {}), source
    )
    sums = tuple(check_sums(meta, sums))  # names and types; values checked per partition
    with dask_client(scheduler, n_workers) as client:
        clock("connect")
        lengths = _partition_lengths(client, ddf, len(parts))
        n_total = sum(lengths)
        if n_total == 0:
            raise InputError(f"{source}: no rows")
        job = _Job(
            source=source,
            column_map=dict(column_map or {}),
            spec=spec,
            n_total=n_total,
            cfg=cfg,
            plan=scoring_plan(meta, cfg),
            sample_rows=sample_rows,
            storage_options=dict(storage_options or {}),
            sums=sums,
        )
        engine = _Engine(client, job, parts, lengths, clock)
        return engine.run(placements)


class _Engine:
    """One run: the survey pass, the model, the units, the layers pass, the sums."""

    def __init__(
        self,
        client: Client,
        job: _Job,
        parts: list,
        lengths: list[int],
        clock: Clock,
    ) -> None:
        self.client, self.job, self.parts, self.lengths = client, job, parts, lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist()
        self.clock = clock
        self.notes: list[str] = []

    def _each(self, func, *args) -> list:
        """``func(partition, i, offset, job, *args)`` per partition, as futures (in order)."""
        from dask import delayed

        tasks = [
            delayed(func, pure=False)(p, i, off, self.job, *args)
            for i, (p, off) in enumerate(zip(self.parts, self.offsets, strict=True))
        ]
        return self.client.compute(tasks)

    def _gather(self, futures: list, desc: str) -> list:
        """Results of small futures, with a progress bar as they come in."""
        from distributed import as_completed

        with progress(total=len(futures), desc=desc) as bar:
            for _ in as_completed(futures, loop=self.client.loop):
                bar.update()
        return self.client.gather(futures)

    def _check_lengths(self, counts: list[int]) -> None:
        if counts != self.lengths:  # the metadata must describe the partitions we read
            raise RuntimeError("Parquet metadata row counts differ from the partitions read")

    def run(self, placements: str | os.PathLike | None) -> DaskLayersResult:
        """Both passes and the unit layer."""
        job, client = self.job, self.client
        survey = self._survey()
        if survey["stats"] and not sum(s["n_valid"] for s in survey["stats"]):
            rejects = self.client.gather(self._each(_ingest_rejects))
            raise NothingPlaced(job.source, job.n_total, pd.concat(rejects, ignore_index=True))
        scoring, scoring_fut = self._scoring(survey)
        layout = self._units(survey)
        cells = (
            [client.submit(operator.getitem, f, "cells", pure=False) for f in survey["futures"]]
            if job.spec.kind == "h3"
            else [None] * len(self.parts)
        )
        survey.pop("futures", None)
        target, tmp, fs = _placements_dir(placements, job.storage_options)
        self.job = _replace(
            job,
            columns=frozenset(LAYER_COLUMNS) | scoring.columns() | set(job.sums),
            placements=tmp,
        )
        layout_fut = client.scatter(layout, broadcast=True, hash=False)
        self.clock("units")
        try:
            acc, smalls = self._layers(scoring_fut, layout_fut, cells, len(layout.units))
            if fs is not None:
                if fs.exists(target):
                    fs.rm(target, recursive=True)
                fs.mv(tmp, target, recursive=True)
        finally:
            if fs is not None and fs.exists(tmp):
                fs.rm(tmp, recursive=True)
        self.clock("layers")
        result = self._finish(layout, acc, smalls)
        result.placements = os.fspath(placements) if placements is not None else None
        result.scoring_notes = scoring_notes(scoring.notes, job.plan)
        result.model_card = finish_card(scoring.card, job.plan, result.scoring_notes)
        return result

    def _finish(
        self, layout: Layout, acc: dict[str, np.ndarray], smalls: list[dict]
    ) -> DaskLayersResult:
        """The unit layer (:func:`patchmap.layers.finish_layers`), rejects, tally and notes."""
        job = self.job
        # the partitions' notes added up, in build_layers' order: what load_accounts notes,
        # what the checks before placement note, the region's notes, placement's
        notes = merge_counts([n for s in smalls for n in s["ingest_notes"]], _COUNTED)
        notes += merge_counts([n for s in smalls for n in s["prep_notes"]], _COUNTED)
        notes += self.notes + merge_counts([n for s in smalls for n in s["notes"]], _COUNTED)
        out, region = finish_layers(job.spec, layout, acc, notes, job.sums)
        rejects, n_placed = _rejects(smalls)
        n_read = sum(s["n_read"] for s in smalls)
        if n_read != n_placed + len(rejects):
            raise RuntimeError(
                f"tally: {n_read} read != {n_placed} placed + {len(rejects)} rejected"
            )
        self.clock("aggregate")
        return DaskLayersResult(
            units=out,
            placed=pd.DataFrame({"unit_id": pd.Series(dtype=object)}),
            rejects=rejects,
            kind=job.spec.kind,
            resolution=job.spec.resolution,
            states=list(region),
            notes=notes,
            timings=self.clock.laps,
            n_accounts=n_read,
            n_placed=n_placed,
        )

    # -- pass 1 ----------------------------------------------------------
    def _survey(self) -> dict[str, Any]:
        """Training rows, reach percentiles, states and H3 cells (only what is needed)."""
        job, client = self.job, self.client
        if not (job.plan.needs_model or job.plan.weights or job.spec.needs_survey):
            return {"futures": [], "stats": []}
        geom = survey_geometry(job.spec)
        if geom is not None:
            geom = client.scatter(geom, broadcast=True, hash=False)
        futures = self._each(_survey, geom)
        stats = self._gather(
            [client.submit(_survey_stats, f, pure=False) for f in futures],
            desc="layers (dask): survey",
        )
        self._check_lengths([s["n_read"] for s in stats])
        self.clock("survey")
        return {"futures": futures, "stats": stats}

    def _scoring(self, survey: dict[str, Any]) -> tuple[_Scoring, Any]:
        """The fitted scoring (on the client, for notes) and its future (for the workers)."""
        job, client = self.job, self.client
        tops: dict[str, float] = {}  # reach's normalisers, from the whole table's top 1 %
        n_valid = sum(s["n_valid"] for s in survey["stats"])
        for col in job.plan.weights:
            sketches = [s["tops"][col] for s in survey["stats"] if col in s["tops"]]
            top = _quantile_from_top(sketches, n_valid) if n_valid else 0.0
            tops[col] = reach_top(top, max((s[0][-1] for s in sketches if s[0].size), default=0))
        if job.plan.needs_model:
            train = [
                client.submit(operator.getitem, f, "train", pure=False) for f in survey["futures"]
            ]
            future = client.submit(_fit_scoring, train, job, tops, pure=False)
            scoring = future.result()
            del train
        else:
            scoring = _Scoring(job.plan, tops, card=given_card(job.n_total))
            future = client.scatter(scoring, broadcast=True, hash=False)
        for note in scoring_notes(scoring.notes, job.plan):
            log.info(note)
        self.clock("fit")
        return scoring, future

    def _units(self, survey: dict[str, Any]) -> Layout:
        """:func:`patchmap.layers.decide_units` from the partitions' surveys (H3: the cells
        of points in the region come to the client, the cells of every point stay)."""
        extra = [None] * len(survey["stats"])
        if self.job.spec.kind == "h3":
            get = self.client.submit
            extra = self.client.gather(
                [get(operator.getitem, f, "extra", pure=False) for f in survey["futures"]]
            )
        surveys = [
            Survey(states=s["states"], extra=e) for s, e in zip(survey["stats"], extra, strict=True)
        ]
        return decide_units(self.job.spec, surveys, self.notes)

    # -- pass 2 ----------------------------------------------------------
    def _layers(self, scoring_fut, layout_fut, cells: list, n_units: int):
        """Place every partition and fold its sums in order; (sums, small results)."""
        client, job = self.client, self.job
        from dask import delayed

        tasks = [
            delayed(_layers_part, pure=False)(p, i, off, job, scoring_fut, layout_fut, c)
            for i, (p, off, c) in enumerate(zip(self.parts, self.offsets, cells, strict=True))
        ]
        futures = client.compute(tasks)
        del tasks
        cells.clear()  # the tasks hold them now: released as soon as used
        acc = None
        smalls, buckets = [], []
        for f in futures:
            acc = client.submit(_fold, acc, f, n_units, job.sums, pure=False)
            smalls.append(client.submit(_small, f, pure=False))
            buckets.append(client.submit(operator.getitem, f, "hashes", pure=False))
        del futures, f  # contributions are freed once folded
        small = self._gather(smalls, desc="layers (dask): place")
        self._check_lengths([s["n_read"] for s in small])
        _check_duplicates(client, self.parts, self.offsets, job, buckets)
        return acc.result(), small


def _replace(job: _Job, **changes: Any) -> _Job:
    from dataclasses import replace

    return replace(job, **changes)


def _placements_dir(placements: str | os.PathLike | None, storage_options: Mapping[str, Any]):
    """(target, temporary directory URL, filesystem) for the placements, or Nones."""
    if placements is None:
        return None, None, None
    import fsspec

    fs, path = fsspec.core.url_to_fs(os.fspath(placements), **dict(storage_options or {}))
    tmp = f"{path.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    fs.makedirs(tmp, exist_ok=True)
    return path, fs.unstrip_protocol(tmp) if "://" in os.fspath(placements) else tmp, fs


def _rejects(smalls: list[dict[str, Any]]) -> tuple[pd.DataFrame, int]:
    """Every rejected row: ingest rejects in row order, then layer rejects in row order."""
    ingest = [s["ingest_rejects"] for s in smalls if s["ingest_rejects"] is not None]
    rejects = pd.concat(ingest, ignore_index=True) if ingest else empty_rejects()
    layer = chunk_rejects([s["layer_rejects"] for s in smalls if s["layer_rejects"] is not None])
    if len(layer):
        rejects = pd.concat([rejects, layer], ignore_index=True)
    return rejects, sum(s["n_placed"] for s in smalls)
