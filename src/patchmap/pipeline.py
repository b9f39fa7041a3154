"""The stages chained: file-level entry points that the CLI, `run` and `demo` share.

Each function reads files, calls the library stage, writes its outputs atomically and
returns what it made, so a notebook can call the same thing the CLI does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from patchmap import geodata
from patchmap.accounts import IngestResult, load_accounts, tally_line
from patchmap.compare import compare_plans, format_metric, write_comparison
from patchmap.config import PlanConfig, plan_config
from patchmap.diff import plan_diff, write_diff
from patchmap.distributed import NothingPlaced, build_layers_dask
from patchmap.errors import InputError, LockError
from patchmap.evaluate import evaluate_plan
from patchmap.export import (
    assign_reps,
    checked_formats,
    dissolve_territories,
    export_plan,
    read_plan,
    recommended_headcount,
    unit_kind,
)
from patchmap.io import (
    atomic_path,
    check_ids,
    check_known_ids,
    read_table,
    side_path,
    write_csv,
    writes_outputs,
)
from patchmap.layers import (
    LayersResult,
    build_layers,
    build_layers_on_polygons,
    check_sums,
    place_accounts,
    write_layers,
)
from patchmap.logs import log, progress
from patchmap.options import UNIT_KINDS, default, error, takes
from patchmap.partition import Partitioner, Plan, locked_conflicts
from patchmap.partition.realign import moved_accounts
from patchmap.partition.reps import account_distance_km, read_reps
from patchmap.quota import Quota, quota_table
from patchmap.sample import sample_accounts
from patchmap.scoring import (
    ScoreResult,
    ScoringConfig,
    score_accounts,
    scoring_config,
    write_scored,
)
from patchmap.segments.named import named_rows, owner_shares, read_named
from patchmap.units.adjacency import (
    BRIDGE_FACTOR,
    build_adjacency,
    check_bridge_factor,
    edge_adjacency,
)
from patchmap.units.custom import load_user_units

Echo = Callable[[str], None]
TARGET = default("partition", "target")
EFFORT = default("partition", "effort")
PROVE_TIME_LIMIT = default("partition", "prove_time_limit")


def _quiet(_: str) -> None:
    pass


def _reading(settings: Mapping) -> dict:
    """How to read the accounts file: its Excel ``sheet`` and text ``encoding``."""
    return {"sheet": settings.get("sheet"), "encoding": settings.get("encoding")}


def rejects_path_for(out: str | os.PathLike) -> Path:
    """Where a stage writes its rejects: beside its main output."""
    return side_path(out, "rejects.csv")


def example_accounts_path() -> Path:
    """The bundled 20k-account California example (repo `examples/` or the installed copy)."""
    candidates = [
        Path(__file__).resolve().parent / "examples" / "accounts_ca.csv",
        Path(__file__).resolve().parents[2] / "examples" / "accounts_ca.csv",
    ]
    for c in candidates:
        if c.exists():
            return c
    raise InputError("bundled example accounts not found (examples/accounts_ca.csv)")


def _scoring(scoring: ScoringConfig | Mapping | None, model: str | None) -> ScoringConfig:
    """The scoring settings (a plan file's ``[scoring]`` table), the ``model`` option over
    their model when given."""
    cfg = scoring_config(scoring)
    return cfg if model is None else replace(cfg, model=model)


def _combined_rejects(ingest: IngestResult, *more: pd.DataFrame) -> pd.DataFrame:
    parts = [ingest.rejects, *[m for m in more if m is not None and len(m)]]
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else ingest.rejects


def require_placed(
    ingest: IngestResult, n_placed: int, rejects: pd.DataFrame, rejects_path: str | os.PathLike
) -> None:
    """No account placed is bad input, not an empty result: write the rejects (they say
    why, row by row) and raise an InputError naming the file and the commonest reason."""
    if n_placed > 0:
        return
    write_csv(rejects, rejects_path, immediate=True)
    why = ""
    if len(rejects):
        common = (
            rejects["reason"]
            .astype(str)
            .str.replace(r"\s+\S*\d\S*$", "", regex=True)
            .value_counts()
        )
        why = f"; commonest reason: {common.index[0]} ({int(common.iloc[0])} rows)"
    raise InputError(
        f"{ingest.source}: none of the {ingest.n_read} rows could be placed{why}; "
        f"every row's reason in {rejects_path}"
    )


def _report(
    echo: Echo, ingest: IngestResult, n_placed: int, rejects: pd.DataFrame, path: Path
) -> None:
    echo(tally_line(ingest.n_read, n_placed, len(rejects), path))


@writes_outputs("out")
@takes("score")
def score_file(
    accounts_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    scoring: Mapping | None = None,
    echo: Echo = _quiet,
    **settings,
) -> ScoreResult:
    """Ingest and score an accounts file; write the scored table, model card and rejects."""
    ingest = load_accounts(accounts_path, settings["columns"], **_reading(settings))
    rejects_path = rejects_path_for(out)
    require_placed(ingest, ingest.n_placed, ingest.rejects, rejects_path)
    result = score_accounts(ingest.accounts, _scoring(scoring, settings["model"]))
    write_scored(result, out)
    write_csv(ingest.rejects, rejects_path)
    for note in result.notes:
        log.info(note)
    _report(echo, ingest, len(result.accounts), ingest.rejects, rejects_path)
    return result


def layers_from_accounts(
    ingest: IngestResult,
    out: str | os.PathLike,
    *,
    units: str | gpd.GeoDataFrame,
    resolution: int,
    region: Sequence[str] | str | None,
    scoring: ScoringConfig | Mapping | None = None,
    sums: Sequence[str] | None = None,
    named: Sequence[str] = (),
    echo: Echo = _quiet,
) -> tuple[LayersResult, ScoreResult]:
    """Score (unless already scored) and aggregate placed accounts into units; write both.

    ``units`` is a kind (``h3``, ``zcta``, ``county``) or the user's own polygons;
    ``sums`` the user's own numeric columns summed too; ``named`` the ids of named
    accounts, scored but held out of the units (their owners carry them).
    """
    require_placed(ingest, ingest.n_placed, ingest.rejects, rejects_path_for(out))
    check_sums(ingest.accounts, sums)  # before the model is trained
    scored = score_accounts(ingest.accounts, scoring_config(scoring))
    for note in scored.notes:
        log.info(note)
    held = scored.accounts["account_id"].astype(str).isin(pd.Index(named)).to_numpy()
    geo = scored.accounts[~held]
    if isinstance(units, gpd.GeoDataFrame):
        result = build_layers_on_polygons(geo, units, sums=sums)
    else:
        states = geodata.normalize_states(region) if region else None
        result = build_layers(geo, units=units, resolution=resolution, states=states, sums=sums)
    for note in result.notes:
        log.info(note)
    write_layers(result, out)
    rejects = _combined_rejects(ingest, result.rejects)
    rejects_path = rejects_path_for(out)
    require_placed(ingest, len(result.placed) + int(held.sum()), rejects, rejects_path)
    write_csv(rejects, rejects_path)
    _report(echo, ingest, len(result.placed) + int(held.sum()), rejects, rejects_path)
    if held.any():
        echo(f"{int(held.sum())} of them named: held out of the units (their owners carry them)")
    return result, scored


@writes_outputs("out")
@takes("layers")
def layers_file(
    accounts_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    echo: Echo = _quiet,
    **settings,
) -> LayersResult:
    """`patchmap layers`: accounts file → unit layer file (GeoParquet) + rejects.

    ``units`` is ``h3``, ``zcta``, ``county``, or a polygon file with id column ``unit_id``.
    ``engine="dask"`` streams a (partitioned) Parquet dataset through a Dask cluster
    (``scheduler`` address, or a LocalCluster sized to this machine).
    """
    units = settings["units"]
    if settings["engine"] == "dask":
        if units not in UNIT_KINDS:
            raise error("layers", "{engine=dask} takes {units} h3, zcta or county")
        if settings["named"] is not None:
            raise error("layers", "{named} needs {engine=pandas} (the Dask engine holds none out)")

        states = geodata.normalize_states(settings["region"]) if settings["region"] else None
        rejects_path = rejects_path_for(out)
        try:
            result = build_layers_dask(
                accounts_path,
                units=units,
                resolution=settings["resolution"],
                states=states,
                column_map=settings["columns"],
                scheduler=settings["scheduler"],
                sums=settings["sums"],
                scoring=_scoring(None, settings["model"]),
            )
        except NothingPlaced as none:  # as the pandas engine: the rejects say why
            empty = IngestResult(pd.DataFrame(), none.rejects, none.n_read, none.source)
            require_placed(empty, 0, none.rejects, rejects_path)
            raise
        for note in result.notes:
            log.info(note)
        source = IngestResult(pd.DataFrame(), result.rejects, result.n_read, str(accounts_path))
        require_placed(source, result.n_placed, result.rejects, rejects_path)
        write_layers(result, out)
        write_csv(result.rejects, rejects_path)
        echo(tally_line(result.n_read, result.n_placed, len(result.rejects), rejects_path))
        return result
    unit_layer = _unit_layer(units, settings["unit_id"], "layers")
    ingest = load_accounts(accounts_path, settings["columns"], **_reading(settings))
    named = _named_ids(settings["named"], ingest)
    result, _ = layers_from_accounts(
        ingest, out, units=unit_layer, resolution=settings["resolution"],
        region=settings["region"], sums=settings["sums"], named=named,
        scoring=_scoring(None, settings["model"]), echo=echo,
    )  # fmt: skip
    return result


def _named_ids(path: str | os.PathLike | None, ingest: IngestResult) -> list[str]:
    """The ids of a NAMED.csv, checked against the accounts read (exit 2 naming lines)."""
    return [] if path is None else _checked_named(path, ingest).ids.tolist()


def _unit_layer(
    units: str | os.PathLike, unit_id: str | None, scope: str
) -> str | gpd.GeoDataFrame:
    """A unit kind as it is, or the user's own polygon file read and checked."""
    if str(units) in UNIT_KINDS:
        return str(units)

    if not unit_id:
        raise error(scope, "{units}: a polygon file needs {unit_id} (its id column)")
    layer, notes = load_user_units(units, unit_id)
    for note in notes:
        log.info(note)
    return layer


def read_units_with_id(path: str | os.PathLike, id_col: str) -> gpd.GeoDataFrame:
    """Read and validate a unit file (any polygons; ids kept as text, invalid shapes repaired)."""
    units, notes = load_user_units(path, id_col)
    for note in notes:
        log.info(note)
    if id_col != "unit_id":
        units[id_col] = units["unit_id"]
    return units


def read_locked(path: str | os.PathLike, unit_ids: Sequence[str]) -> pd.Series:
    """Read a LOCKED.csv (``unit_id,territory``): unit id -> territory, ids as text.

    Blank cells, repeated units and ids that are not units raise :class:`InputError`
    naming the lines; ``attrs['lines']`` keeps each unit's line for later messages.
    """
    p = Path(path)
    df = read_table(p, dtype=str)
    missing = [c for c in ("unit_id", "territory") if c not in df.columns]
    if missing:
        raise InputError(f"{p}: column {missing[0]!r} not found (expected unit_id,territory)")
    text, lines = check_ids(df, ["unit_id", "territory"], source=str(p))
    ids, terr = text["unit_id"], text["territory"]
    check_known_ids(ids, lines, unit_ids, source=str(p))
    out = pd.Series(terr.to_numpy(), index=pd.Index(ids.to_numpy(), name="unit_id"),
                    name="territory")  # fmt: skip
    out.attrs["lines"] = dict(zip(ids.tolist(), lines.tolist(), strict=True))
    out.attrs["source"] = str(p)
    return out


def _check_locked_rows(locked: pd.Series, adjacency) -> None:
    """Conflicting locks (a territory's locked units cut apart by other territories' locks)
    as an InputError naming the lines of the locked file."""
    codes_, names = pd.factorize(locked.to_numpy(), sort=True)
    codes = pd.Series(-1, index=pd.Index(np.asarray(adjacency.ids).astype(str)))
    codes[locked.index] = codes_
    bad = locked_conflicts(adjacency, codes.to_numpy())
    if bad:
        t, units = bad[0]
        lines = locked.attrs.get("lines", {})
        mine = locked.index[locked.to_numpy() == names[t]]
        rows = sorted(lines.get(u, 0) for u in mine)
        cut = ", ".join(repr(str(u)) for u in units[:5])
        raise InputError(
            f"{locked.attrs.get('source', 'locked')}: lines {', '.join(map(str, rows[:8]))}"
            f"{' ...' if len(rows) > 8 else ''} lock units to {names[t]!r} that cannot form one "
            f"territory: {cut} cannot be joined to the others without crossing units locked to "
            "other territories"
        )


def plan_units(
    units: gpd.GeoDataFrame, *, id_col: str, settings: Mapping,
    shares: Sequence[float] | None = None,
) -> tuple[Plan, pd.DataFrame | None]:  # fmt: skip
    """Fit or realign a plan from files: reps, current plan, locked units, groups, regions.

    ``settings`` are the partition options (:func:`patchmap.options.for_table`
    ``("partition")``, library units); ``shares`` each territory's target share (a plain
    fit only: see :meth:`Partitioner.fit`). Returns the plan and the validated reps (or
    None). Raises :class:`InputError` for inconsistent inputs, naming the file and lines.
    """
    x = settings
    ids = units[id_col].astype(str).tolist()
    reps = read_reps(x["reps"]) if x["reps"] is not None else None
    current = None
    if x["current"] is not None:
        cur = read_plan(x["current"], ids)
        current = pd.Series(cur["territory"].to_numpy(), index=cur["unit_id"].to_numpy())
    k = x["territories"]
    if k == "auto":
        k = _auto_territories(units, x.get("capacity"))
    for what, n in (
        (f"{x['reps']}: {len(reps) if reps is not None else 0} reps", len(reps) if reps is not None else None),
        (f"{x['current']}: {current.nunique() if current is not None else 0} territories",
         int(current.nunique()) if current is not None else None),
    ):  # fmt: skip
        if n is None:
            continue
        if k is not None and k != n:
            raise error("partition", f"{{territories}}: {k} asked but {what} (one territory each)")
        k = n
    if k is None:
        raise error(
            "partition", "{territories}: give the number of territories (or {reps} / {current})"
        )
    factor = x.get("bridge_factor", BRIDGE_FACTOR)
    check_bridge_factor(factor)  # before the graph is read: a bad value costs no build
    if x.get("adjacency") is not None:
        adjacency = edge_adjacency(units, x["adjacency"], id_col=id_col, bridge_factor=factor)
    else:
        adjacency = build_adjacency(units, id_col=id_col, bridge_factor=factor)
    locked = None
    if x["locked"] is not None:
        locked = read_locked(x["locked"], ids)
        _check_locked_rows(locked, adjacency)
    part = Partitioner(
        k, list(x["balance"]), tolerance=x["tolerance"], target=x.get("target", TARGET),
        id_col=id_col, seed=x["seed"], prove=bool(x.get("prove", False)),
        prove_time_limit=x.get("prove_time_limit") or PROVE_TIME_LIMIT, effort=x.get("effort", EFFORT),
        time_limit=x.get("time_limit"),
    )  # fmt: skip
    common = dict(adjacency=adjacency, locked=locked, reps=reps, within=x["within"],
                  regions=x["regions"])  # fmt: skip
    try:
        if current is not None:
            plan = part.realign(
                units, current, relax=x["relax"], max_moved=x["max_moved"], **common
            )
        elif shares is not None:
            if x["within"] is not None or x["regions"] is not None:
                raise error("partition", "target shares take no {within} or {regions}")
            plan = part.fit(units, shares=shares, **common)
        else:
            plan = part.fit(units, **common)
    except LockError as exc:
        if locked is None:
            raise
        raise InputError(_locked_lines(locked, exc)) from None
    return plan, reps


def _locked_lines(locked: pd.Series, exc: LockError) -> str:
    """A lock the partitioner cannot keep, named by the locked file and its lines."""
    lines = locked.attrs.get("lines", {})
    rows = sorted(lines[u] for u in exc.units if u in lines)
    where = locked.attrs.get("source", "locked")
    if rows:
        more = " ..." if len(rows) > 8 else ""
        where += f": line{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows[:8]))}{more}"
    return f"{where}: {str(exc).removeprefix('locked: ')}"


def _auto_territories(units: gpd.GeoDataFrame, capacity) -> int:
    """``territories = auto``: the headcount the capacity rule recommends for the units."""
    if capacity is None:
        raise error("partition", "{territories=auto} needs {capacity} (e.g. potential=2000000)")
    h = recommended_headcount(units, capacity)
    if h.reps < 2:
        raise error(
            "partition",
            f"{{territories=auto}}: {{capacity}} gives {h.sentence()}: nothing to split",
        )
    log.info(f"territories: auto -> {h.sentence()}")
    return h.reps


def _quota(settings: Mapping) -> Quota | None:
    """The quota rule the options ask for (None without ``quota``)."""
    if settings["quota"] is None:
        return None
    return Quota(settings["quota"], settings["quota_floor"], settings["quota_cap"])


@writes_outputs("out")
@takes("partition")
def partition_file(
    units_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    echo: Echo = _quiet,
    **settings,
) -> Plan:
    """`patchmap partition`: unit file → PLAN.csv (`unit_id,territory`).

    Beside the plan and named after it (``plan.csv`` -> ``plan.moves.csv``), as the
    options ask: ``moves`` (a realignment's moved units), ``regions`` (territory ->
    region), ``reps`` (homes and travel) and ``quota`` (the target split by potential,
    or the primary measure).
    """
    id_col = settings["id_col"]
    units = read_units_with_id(units_path, id_col)
    plan, _ = plan_units(units, id_col=id_col, settings=settings)
    quota = _quota(settings)
    q = None if quota is None else quota_table(units, plan, quota, id_col=id_col)
    plan.to_csv(out)
    written = plan.write_side_files(out)
    if q is not None:
        written["quota"] = write_csv(q, side_path(out, "quota.csv"))
    _echo_plan(plan, echo)
    for name, path in written.items():
        echo(f"{name}: {path}")
    return plan


def _echo_plan(plan: Plan, echo: Echo) -> None:
    s = plan.summary()
    echo(
        f"{s.get('territories')} territories over {s.get('units')} units: "
        f"max deviation {100 * plan.max_deviation:.2f}%, "
        f"cut-edge fraction {plan.cut_edge_fraction:.3f}, "
        f"mean Polsby-Popper {plan.mean_polsby_popper:.3f}, "
        f"{len(plan.bridges)} bridge edge(s)"
    )
    if plan.certificate is not None:
        echo(plan.certificate.sentence())
    for note in plan.notes:
        if getattr(note, "code", None) == "realigned":
            echo(note)
    if plan.relaxed:
        echo(f"warning: {plan.relaxed}")
    if plan.reps is not None and "mean_distance_km" in plan.reps.columns:
        d = plan.reps["mean_distance_km"]
        echo(
            f"rep travel: mean {d.mean():.1f} km from home (worst {plan.reps.loc[d.idxmax(), 'rep_id']}: {d.max():.1f} km)"
        )
    if plan.regions is not None:
        echo(
            f"{plan.regions.nunique()} regions: "
            + ", ".join(f"{r} ({n})" for r, n in plan.regions.value_counts(sort=False).items())
        )
    shown = ("realigned", "relaxed", "certificate")  # echoed above
    for note in plan.notes:
        if getattr(note, "code", None) not in shown:
            log.info(note)


@writes_outputs()
@takes("evaluate")
def evaluate_file(
    units_path: str | os.PathLike, plan_path: str | os.PathLike, *, echo: Echo = _quiet, **settings
) -> Plan:
    """`patchmap evaluate`: measure PLAN.csv over the units as it is (balance, contiguity,
    cut edges, compactness) and report it the way `partition` reports its own plans."""
    id_col = settings["id_col"]
    units = _units_as_unit_id(read_units_with_id(units_path, id_col), id_col)
    plan = evaluate_plan(
        units,
        read_plan(plan_path, units),
        settings["balance"],
        tolerance=settings["tolerance"],
        adjacency=settings["adjacency"],
        bridge_factor=settings["bridge_factor"],
    )
    devs = ", ".join(f"{c} {100 * d:.2f}%" for c, d in plan.max_deviations.items())
    echo(f"{plan_path}: {plan.n_territories} territories over {len(plan.assignment)} units")
    echo(f"max deviation from the mean: {devs}")
    pieces = "every territory one piece" if plan.contiguous else "NOT every territory one piece"
    echo(
        f"{pieces}; cut-edge fraction {plan.cut_edge_fraction:.3f}; "
        f"mean Polsby-Popper {plan.mean_polsby_popper:.3f}; {len(plan.bridges)} bridge edge(s)"
    )
    for note in plan.notes:
        echo(f"warning: {note}")
    return plan


@writes_outputs("out")
@takes("map")
def map_file(
    units_path: str | os.PathLike,
    plan_path: str | os.PathLike,
    out: str | os.PathLike,
    **settings,
) -> Path:
    """`patchmap map`: units + PLAN.csv → self-contained HTML (or a static PNG/PDF);
    ``reps`` adds the reps' home markers."""
    from patchmap.render import render_map, render_static  # folium: only to draw a map

    id_col, title, reps = settings["id_col"], settings["title"], settings["reps"]
    units = _units_as_unit_id(read_units_with_id(units_path, id_col), id_col)
    plan = read_plan(plan_path, units)
    rep_table = read_reps(reps) if reps is not None else None
    if settings["fmt"] == "html":
        return render_map(units, plan, out, title=title, tiles=settings["tiles"], reps=rep_table)
    return render_static(units, plan, out, title=title, fmt=settings["fmt"], reps=rep_table)


def _units_as_unit_id(units: gpd.GeoDataFrame, id_col: str) -> gpd.GeoDataFrame:
    if id_col == "unit_id":
        return units
    return units.drop(columns=[c for c in ["unit_id"] if c in units.columns]).rename(
        columns={id_col: "unit_id"}
    )


def placed_accounts(
    accounts_path: str | os.PathLike,
    units: gpd.GeoDataFrame,
    rejects_path: str | os.PathLike,
    *,
    column_map: Mapping[str, str] | None = None,
    score: bool = True,
    scoring: ScoringConfig | Mapping | None = None,
    reading: Mapping | None = None,
    echo: Echo = _quiet,
) -> pd.DataFrame:
    """Ingest (and score, with ``scoring``) an accounts file and place it in ``units``; the
    rows that cannot be placed go to ``rejects_path`` with their reason, and the tally is
    echoed."""
    ingest = load_accounts(accounts_path, column_map, **dict(reading or {}))
    require_placed(ingest, ingest.n_placed, ingest.rejects, rejects_path)
    acc = (
        score_accounts(ingest.accounts, scoring_config(scoring)).accounts
        if score
        else ingest.accounts
    )
    placed, rejects = place_accounts(acc, units, _layer_kind(unit_kind(units)))
    rejects = _combined_rejects(ingest, rejects)
    require_placed(ingest, len(placed), rejects, rejects_path)
    write_csv(rejects, Path(rejects_path))
    _report(echo, ingest, len(placed), rejects, Path(rejects_path))
    return placed


@writes_outputs("out_dir")
@takes("export")
def export_file(
    units_path: str | os.PathLike,
    plan_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    echo: Echo = _quiet,
    **settings,
) -> dict[str, Path]:
    """`patchmap export`: units + PLAN.csv (+ accounts) → the CRM tables and polygons.

    ``reps`` names each territory's rep (a ``territory`` column, territories labelled by
    ``rep_id``, or homes; one rep per territory unless ``shared_territories``),
    ``capacity`` (accounts per rep, or e.g. ``potential=2000000``) adds the recommended
    headcount and ``quota`` splits a target across territories by potential, all in
    ``summary.csv``.
    """
    id_col, reps = settings["id_col"], settings["reps"]
    rep_table = read_reps(reps, need_home=False) if reps is not None else None
    # before any file (rejects.csv, the tables) is written
    checked_formats(settings["formats"], reps=rep_table, accounts=settings["accounts"] is not None)
    units = _units_as_unit_id(read_units_with_id(units_path, id_col), id_col)
    plan = read_plan(plan_path, units)
    accounts = named = None
    if settings["accounts"] is not None:
        rejects_path = Path(out_dir) / "rejects.csv"
        if settings["named"] is None:
            accounts = placed_accounts(
                settings["accounts"], units, rejects_path, column_map=settings["columns"],
                scoring=_scoring(None, settings["model"]), reading=_reading(settings),
                echo=echo,
            )  # fmt: skip
        else:
            accounts, named = _placed_and_named(
                settings, units, units_path, plan, rep_table, rejects_path, echo
            )
    elif settings["named"] is not None:
        raise error("export", "{named} needs {accounts} (the accounts the names refer to)")
    return export_plan(
        units, plan, out_dir, accounts=accounts, reps=rep_table,
        capacity=settings["capacity"], quota=_quota(settings),
        shared=settings["shared_territories"], formats=settings["formats"],
        salesforce_model=settings["salesforce_model"],
        salesforce_territories=settings["salesforce_territories"],
        tolerance=settings["tolerance"], named=named, named_mode=settings["named_mode"],
    )  # fmt: skip


def _placed_and_named(
    settings: Mapping, units: gpd.GeoDataFrame, units_path: str | os.PathLike,
    plan: pd.DataFrame, reps: pd.DataFrame | None, rejects_path: Path, echo: Echo,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """:func:`placed_accounts` with a NAMED.csv: the accounts routed by geography, and the
    named ones with their owner (wherever they are: never a reject for their place)."""
    ingest = load_accounts(settings["accounts"], settings["columns"], **_reading(settings))
    require_placed(ingest, ingest.n_placed, ingest.rejects, rejects_path)
    scored = score_accounts(ingest.accounts, _scoring(None, settings["model"])).accounts
    placed, rejects = place_accounts(scored, units, _layer_kind(unit_kind(units)))
    named = _named_table(settings["named"], ingest, scored, placed, plan, reps, units)
    pinned = placed["account_id"].astype(str).isin(named["account_id"])
    if "accounts" in units.columns and units["accounts"].sum() == len(placed) and pinned.any():
        log.warning(
            f"{units_path}: the units count the named accounts too (their owners carry "
            "them): build them with `patchmap layers --named`"
        )
    rejects = rejects[~rejects["account_id"].astype(str).isin(named["account_id"])]
    rejects = _combined_rejects(ingest, rejects)
    write_csv(rejects, rejects_path)
    _report(echo, ingest, int((~pinned).sum()) + len(named), rejects, rejects_path)
    return placed, named


def _named_table(
    path: str | os.PathLike, ingest: IngestResult, scored: pd.DataFrame, placed: pd.DataFrame,
    plan: pd.DataFrame, reps: pd.DataFrame | None, units: gpd.GeoDataFrame,
) -> pd.DataFrame:  # fmt: skip
    """The named accounts of a NAMED.csv as account rows with their owner's ``territory``
    (a rep's territory from ``reps``, or a territory of ``plan``) and the unit they sit in."""
    named = _checked_named(path, ingest)
    territories = pd.unique(plan["territory"].astype(str))
    rep_territory = None
    if reps is not None and named.table["rep_id"].notna().any():
        labels = plan["territory"].to_numpy(dtype=object)
        link = assign_reps(reps, territories, dissolve_territories(units, labels), shared=True)
        rep_territory = dict(zip(link["rep_id"].astype(str), link["territory"], strict=True))
    owners = named.owners(named.table, rep_territory=rep_territory, territories=territories)
    return _with_units(named_rows(scored, owners), placed)


def _checked_named(path: str | os.PathLike, ingest: IngestResult):
    """A NAMED.csv read and checked against the accounts read (exit 2 naming lines)."""
    return read_named(path).check_accounts(
        ingest.accounts["account_id"].astype(str),
        rejected=ingest.rejects["account_id"].astype(str),
    )


def _with_units(rows: pd.DataFrame, placed: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the ``unit_id`` each account of ``placed`` sits in (blank elsewhere)."""
    unit_of = pd.Series(placed["unit_id"].to_numpy(), index=placed["account_id"].astype(str))
    return rows.assign(unit_id=unit_of.reindex(rows["account_id"].astype(str)).to_numpy())


@writes_outputs("out_dir")
@takes("compare")
def compare_file(
    plan_a: str | os.PathLike,
    plan_b: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    echo: Echo = _quiet,
    **settings,
) -> dict[str, Path]:
    """`patchmap compare`: two PLAN.csv files → compare.csv, compare.md (and, with the
    units, balance/compactness/travel rows and compare.html, a map of both plans)."""
    units_path, id_col, reps = settings["units_path"], settings["id_col"], settings["reps"]
    pa_, pb_ = Path(plan_a), Path(plan_b)
    names = (pa_.stem, pb_.stem)
    if names[0] == names[1]:  # plan.csv vs plan.csv: name them by their folders too
        names = tuple(f"{q.resolve().parent.name}/{q.stem}" for q in (pa_, pb_))
    if names[0] == names[1]:
        names = (f"A: {names[0]}", f"B: {names[1]}")
    units = None
    if units_path is not None:
        units = _units_as_unit_id(read_units_with_id(units_path, id_col), id_col)
        ids = units
    else:
        ids = _plan_unit_ids(plan_a)
    pa, pb = read_plan(plan_a, ids), read_plan(plan_b, ids)
    rep_table = read_reps(reps, need_home=False) if reps is not None else None
    accounts = None
    if settings["accounts"] is not None:
        accounts = placed_accounts(
            settings["accounts"], units, Path(out_dir) / "rejects.csv",
            column_map=settings["columns"], reading=_reading(settings), score=False, echo=echo,
        )  # fmt: skip
    cmp = compare_plans(
        pa, pb, ids, balance=settings["balance"], reps=rep_table, names=names, accounts=accounts
    )
    written = write_comparison(cmp, out_dir, units=units, tiles=settings["tiles"])
    for warning in cmp.warnings:
        echo(f"note: {warning}")
    echo(cmp.markdown().split("\n\n", 1)[0].lstrip("# "))
    for row in cmp.table.itertuples(index=False):
        change = format_metric(row[3], row[0], signed=True)
        echo(
            f"  {row[0]}: {format_metric(row[1], row[0]) or '-'} | {format_metric(row[2], row[0])}"
            + (f" ({change})" if change else "")
        )
    if units is None:
        echo("(give --units for balance, compactness, travel and the map)")
    return written


@writes_outputs("out_dir")
@takes("diff")
def diff_file(
    old_plan: str | os.PathLike,
    new_plan: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    echo: Echo = _quiet,
    **settings,
) -> dict[str, Path]:
    """`patchmap diff`: what changed for whom between two PLAN.csv files over the same units:
    ``zip_changes.csv``, ``account_changes.csv``, ``rep_totals.csv``, ``off_target.csv``
    and ``diff.md`` (see :func:`patchmap.diff.plan_diff`)."""
    id_col = settings["id_col"]
    units = _units_as_unit_id(read_units_with_id(settings["units_path"], id_col), id_col)
    old, new = read_plan(old_plan, units), read_plan(new_plan, units)
    reps = read_reps(settings["reps"], need_home=False) if settings["reps"] else None
    old_reps = read_reps(settings["old_reps"], need_home=False) if settings["old_reps"] else None
    out = Path(out_dir)
    accounts = old_accounts = None
    scoring = _scoring(None, settings["model"])
    if settings["accounts"] is not None:
        accounts = placed_accounts(
            settings["accounts"], units, out / "rejects.csv", column_map=settings["columns"],
            scoring=scoring, reading=_reading(settings),
            echo=echo,
        )  # fmt: skip
    if settings["old_accounts"] is not None:
        old_accounts = placed_accounts(
            settings["old_accounts"], units, out / "old_accounts.rejects.csv",
            column_map=settings["columns"], scoring=scoring, reading=_reading(settings),
            echo=echo,
        )  # fmt: skip
    names = (Path(old_plan).stem, Path(new_plan).stem)
    if names[0] == names[1]:
        names = (f"old {names[0]}", f"new {names[1]}")
    d = plan_diff(
        units, old, new, accounts=accounts, old_accounts=old_accounts, reps=reps,
        old_reps=old_reps, balance=settings["balance"], tolerance=settings["tolerance"],
        names=names,
    )  # fmt: skip
    for line in d.markdown().splitlines()[2:]:
        if not line.startswith("- "):
            break
        echo(line[2:])
    return write_diff(d, out)


def _plan_unit_ids(path: str | os.PathLike) -> list[str]:
    """The unit ids a plan file lists (reading it properly, with its errors, comes after)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: file not found")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                         skipinitialspace=True)  # fmt: skip
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        return []
    if "unit_id" not in df.columns:
        return []
    return df["unit_id"].str.strip().drop_duplicates().tolist()


def _layer_kind(kind: str) -> str:
    """Placement rule for a unit kind: H3 cells and ZCTAs by id, other polygons by point."""
    return kind if kind in ("h3", "zcta") else "county"


@dataclass
class RunResult:
    """What `run`/`demo` produced: paths of every output and the fitted plan."""

    outputs: dict[str, Path] = field(default_factory=dict)
    plan: Plan | None = None
    ingest: IngestResult | None = None
    segments: object = None  # a patchmap.segments.SegmentedPlan, for [[segment]] plans


@writes_outputs()
def run_plan(config: PlanConfig, *, echo: Echo = _quiet) -> RunResult:
    """`patchmap run` for one plan: every stage from one config, outputs in ``config.out``.

    A plan with ``[[segment]]`` tables goes to :func:`patchmap.run.run_config`, which plans
    every segment with these stages (segments build on the pipeline, not the other way).
    """
    if config.segments:
        raise ValueError("run_plan: this plan has [[segment]] tables; call patchmap.run.run_config")
    from patchmap.render import render_map  # folium: loaded only to draw a map

    part, units_cfg = config.partition, config.units
    unit_layer = _unit_layer(units_cfg["units"], units_cfg["unit_id"], "units")
    rep_file = read_reps(part["reps"]) if part["reps"] is not None else None  # before writing
    if config.accounts["named"] is not None and part["named_mode"] == "balance":
        if rep_file is None or part["within"] or part["regions"] or part["current"]:
            raise error("partition", "{named_mode=balance} needs {reps} (the owners' "
                                     "territories) and no {within}, {regions} or {current}")  # fmt: skip
    out = config.out
    if os.path.lexists(out) and not out.is_dir():
        raise InputError(f"{config.source or 'plan'}: [output] dir {str(out)!r} is not a folder")
    res = RunResult()
    with progress(total=5, desc="patchmap run") as bar:
        bar.set_postfix_str("ingest")
        ingest = load_accounts(
            config.accounts["path"], config.accounts["columns"], **_reading(config.accounts)
        )
        res.ingest = ingest
        named = (
            _checked_named(config.accounts["named"], ingest)
            if config.accounts["named"] is not None
            else None
        )
        bar.update()
        bar.set_postfix_str("score + layers")
        units_path = out / "units.parquet"
        layers, scored = layers_from_accounts(
            ingest,
            units_path,
            units=unit_layer,
            resolution=units_cfg["resolution"],
            region=units_cfg["region"],
            scoring=config.scoring,
            sums=units_cfg["sums"],
            named=named.ids.tolist() if named is not None else (),
            echo=echo,
        )
        res.outputs["units"] = units_path
        res.outputs["rejects"] = rejects_path_for(units_path)
        scored_path = out / "accounts_scored.parquet"
        write_scored(scored, scored_path)
        res.outputs["scored"] = scored_path
        bar.update()

        bar.set_postfix_str("partition")
        shares = named_table = None
        by_rep = {r: r for r in rep_file["rep_id"]} if rep_file is not None else None
        if named is not None and part["named_mode"] == "balance":
            owners = named.owners(named.table, rep_territory=by_rep, territories=list(by_rep))
            shares, notes = owner_shares(layers.units, named_rows(scored.accounts, owners),
                                         rep_file, part["balance"][0])  # fmt: skip
            for note in notes:
                log.info(note)
        plan, reps = plan_units(
            layers.units, id_col="unit_id",
            settings={**part, "capacity": config.export["capacity"]}, shares=shares,
        )  # fmt: skip
        if named is not None:
            owners = named.owners(named.table, rep_territory=by_rep, territories=plan.labels)
            named_table = _with_units(named_rows(scored.accounts, owners), layers.placed)
        res.plan = plan
        plan_path = out / "plan.csv"
        plan.to_csv(plan_path)
        res.outputs["plan"] = plan_path
        _write_whatif(plan, plan_path, layers.placed, reps, res.outputs)
        if plan.moves is not None:
            res.outputs.update(
                _realignment_diff(plan, layers.units, layers.placed, reps, part, out, echo)
            )
        _echo_plan(plan, echo)
        bar.update()

        bar.set_postfix_str("map")
        plan_frame = plan.to_frame()
        res.outputs["map"] = render_map(
            layers.units, plan_frame, out / "map.html", title=config.map["title"],
            tiles=config.map["tiles"], plan_metrics=plan, reps=reps, quota=_quota(part),
            tolerance=part["tolerance"],
        )  # fmt: skip
        bar.update()
        bar.set_postfix_str("export")
        res.outputs.update(
            export_plan(
                layers.units, plan_frame, out, accounts=layers.placed, plan_metrics=plan,
                reps=_reps_by_label(reps), capacity=config.export["capacity"],
                quota=_quota(part), formats=config.export["formats"],
                salesforce_model=config.export["salesforce_model"],
                salesforce_territories=config.export["salesforce_territories"],
                tolerance=part["tolerance"], named=named_table, named_mode=part["named_mode"],
            )
        )  # fmt: skip
        bar.update()
    return res


def _reps_by_label(reps: pd.DataFrame | None) -> pd.DataFrame | None:
    """Reps of a plan drawn around them: its territories are labelled by ``rep_id``, so a
    ``territory`` column left in the reps file (last year's) must not relink them."""
    return reps.drop(columns="territory") if reps is not None and "territory" in reps else reps


def _write_whatif(
    plan: Plan, plan_path: Path, accounts: pd.DataFrame, reps: pd.DataFrame | None,
    outputs: dict[str, Path],
) -> None:  # fmt: skip
    """The plan's side files, with the accounts known: which accounts moved
    (``plan.moved_accounts.csv``) and each rep's mean and 90th-percentile distance from home to
    their accounts (``mean_account_km``, ``p90_account_km`` in the reps report)."""
    if plan.reps is not None and reps is not None:
        km = account_distance_km(reps, accounts, plan).reindex(plan.reps["rep_id"])
        for col in ("mean_account_km", "p90_account_km"):
            plan.reps[col] = km[col].to_numpy()
    outputs.update(plan.write_side_files(plan_path))
    if plan.moves is not None:
        moved = moved_accounts(accounts, plan.moves)
        outputs["moved_accounts"] = write_csv(moved, side_path(plan_path, "moved_accounts.csv"))
        log.info(f"{len(moved)} account(s) change territory: {outputs['moved_accounts']}")


def _realignment_diff(
    plan: Plan, units: gpd.GeoDataFrame, accounts: pd.DataFrame, reps: pd.DataFrame | None,
    part: Mapping, out: Path, echo: Echo,
) -> dict[str, Path]:  # fmt: skip
    """What a realignment changes for whom (``patchmap diff`` of the current plan and the new
    one): with ``current_accounts`` (last year's), new and lost accounts are told apart
    from moved ones, and ``plan.moved_accounts.csv`` lists only accounts that really moved."""
    new = plan.assignment.astype(str)
    old = new.copy()
    old[plan.moves["unit_id"].astype(str).to_numpy()] = plan.moves["from"].astype(str).to_numpy()
    frame = {n: pd.DataFrame({"unit_id": p.index, "territory": p.to_numpy()})
             for n, p in (("old", old), ("new", new))}  # fmt: skip
    last_year = None
    if part["current_accounts"] is not None:
        last_year = placed_accounts(
            part["current_accounts"], units, out / "current_accounts.rejects.csv", score=False,
            echo=echo,
        )  # fmt: skip
    rep_table = _reps_by_label(reps)
    d = plan_diff(
        units, frame["old"], frame["new"], accounts=accounts, old_accounts=last_year,
        reps=rep_table, balance=plan.balance, tolerance=part["tolerance"],
        names=(Path(part["current"]).stem, "plan"),
    )  # fmt: skip
    written = write_diff(d, out)
    if last_year is not None:
        moved = d.accounts[d.accounts["change"] == "moved"].rename(
            columns={"old_territory": "from", "new_territory": "to"}
        )
        written["moved_accounts"] = write_csv(
            moved, side_path(out / "plan.csv", "moved_accounts.csv")
        )
        log.info(f"{len(moved)} account(s) change territory: {written['moved_accounts']}")
    else:
        log.info(
            "plan.moved_accounts.csv lists every account in a moved unit; give [partition] "
            "current_accounts (last year's accounts) to list new accounts as new, not moved"
        )
    return written


def demo_config(
    out: str | os.PathLike, *, tiles: bool | None = None, effort: float | None = None
) -> PlanConfig:
    """The demo: the bundled California accounts, ZCTA units, 20 territories (``tiles``:
    a basemap, default as for ``map``; ``effort``: the search's, default as for
    ``partition``)."""
    search = {} if effort is None else {"effort": effort}
    return plan_config(
        {
            "accounts": {"path": example_accounts_path()},
            "units": {"units": "zcta", "region": ["CA"]},
            "partition": {"territories": 20, **search},
            "map": {
                "title": "patchmap demo: California, 20 territories balanced on revenue potential",
                "tiles": tiles,
            },
            "output": {"dir": Path(out)},
        }
    )


@writes_outputs("out")
@takes("sample-accounts")
def sample_file(out: str | os.PathLike, **settings) -> Path:
    """`patchmap sample-accounts`: write synthetic accounts (CSV, Parquet or Excel by suffix)."""
    df = sample_accounts(
        settings["region"], settings["n"], settings["seed"], bad_share=settings["bad_share"]
    )
    p = Path(out)
    suffix = p.suffix.lower()
    with atomic_path(p) as tmp:
        if suffix in {".parquet", ".pq"}:
            df.to_parquet(tmp, index=False)
        elif suffix == ".xlsx":
            df.to_excel(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
    return p


__all__ = [
    "RunResult",
    "compare_file",
    "evaluate_file",
    "demo_config",
    "diff_file",
    "example_accounts_path",
    "export_file",
    "layers_file",
    "map_file",
    "partition_file",
    "placed_accounts",
    "plan_units",
    "read_locked",
    "run_plan",
    "sample_file",
    "score_file",
]
