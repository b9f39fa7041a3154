"""The stages chained: file-level entry points that the CLI, `run` and `demo` share.

Each function reads files, calls the library stage, writes its outputs atomically and
returns what it made, so a notebook can call the same thing the CLI does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd

from patchmap import geodata
from patchmap.accounts import IngestResult, load_accounts
from patchmap.config import PlanConfig
from patchmap.errors import InputError
from patchmap.io import read_table, read_units, write_csv
from patchmap.layers import LayersResult, build_layers, write_layers
from patchmap.logs import log, progress
from patchmap.partition import Partitioner, Plan
from patchmap.scoring import ScoreResult, score_accounts, write_scored

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def rejects_path_for(out: str | os.PathLike) -> Path:
    """Where a stage writes its rejects: beside its main output."""
    p = Path(out)
    return p.with_name(p.stem + ".rejects.csv") if p.suffix else p / "rejects.csv"


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


def _combined_rejects(ingest: IngestResult, *more: pd.DataFrame) -> pd.DataFrame:
    parts = [ingest.rejects, *[m for m in more if m is not None and len(m)]]
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else ingest.rejects


def _report(echo: Echo, ingest: IngestResult, n_placed: int, rejects: pd.DataFrame, path: Path) -> None:
    echo(f"{ingest.n_read} read, {n_placed} placed, {len(rejects)} rejected ({path})")


def score_file(
    accounts_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    column_map: Mapping[str, str] | None = None,
    scoring: Mapping | None = None,
    echo: Echo = _quiet,
) -> ScoreResult:
    """Ingest and score an accounts file; write the scored table, model card and rejects."""
    ingest = load_accounts(accounts_path, column_map)
    result = score_accounts(ingest.accounts, _scoring_config(scoring))
    write_scored(result, out)
    rejects_path = rejects_path_for(out)
    write_csv(ingest.rejects, rejects_path)
    for note in result.notes:
        log.info(note)
    _report(echo, ingest, len(result.accounts), ingest.rejects, rejects_path)
    return result


def _scoring_config(scoring: Mapping | None):
    """A ScoringConfig from the plan file's [scoring] table (rules weights as a sub-table)."""
    from patchmap.scoring import RulesWeights, ScoringConfig

    if not scoring:
        return None
    options = dict(scoring)
    try:
        if isinstance(options.get("rules"), Mapping):
            options["rules"] = RulesWeights(**options["rules"])
        return ScoringConfig(**options)
    except TypeError as exc:
        raise InputError(f"[scoring]: {exc}") from None


def layers_from_accounts(
    ingest: IngestResult,
    out: str | os.PathLike,
    *,
    units: str = "zcta",
    resolution: int = 7,
    region: Sequence[str] | str | None = None,
    scoring: Mapping | None = None,
    echo: Echo = _quiet,
) -> tuple[LayersResult, ScoreResult]:
    """Score (unless already scored) and aggregate placed accounts into units; write both."""
    states = geodata.normalize_states(region) if region else None
    scored = score_accounts(ingest.accounts, _scoring_config(scoring))
    for note in scored.notes:
        log.info(note)
    result = build_layers(scored.accounts, units=units, resolution=resolution, states=states)
    write_layers(result, out)
    rejects = _combined_rejects(ingest, result.rejects)
    rejects_path = rejects_path_for(out)
    write_csv(rejects, rejects_path)
    _report(echo, ingest, len(result.placed), rejects, rejects_path)
    return result, scored


def layers_file(
    accounts_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    units: str = "zcta",
    resolution: int = 7,
    region: Sequence[str] | str | None = None,
    column_map: Mapping[str, str] | None = None,
    echo: Echo = _quiet,
) -> LayersResult:
    """`patchmap layers`: accounts file → unit layer file (GeoParquet) + rejects."""
    ingest = load_accounts(accounts_path, column_map)
    result, _ = layers_from_accounts(
        ingest, out, units=units, resolution=resolution, region=region, echo=echo
    )
    return result


def read_units_with_id(path: str | os.PathLike, id_col: str) -> gpd.GeoDataFrame:
    """Read a unit file and check its id column (kept as text so leading zeros survive)."""
    units = read_units(path)
    if id_col not in units.columns:
        cols = ", ".join(c for c in units.columns if c != "geometry")
        raise InputError(f"{path}: id column {id_col!r} not found (columns: {cols})")
    units[id_col] = units[id_col].astype(str)
    return units


def partition_file(
    units_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    id_col: str,
    balance: Sequence[str],
    territories: int,
    tolerance_pct: float = 5.0,
    seed: int = 0,
    echo: Echo = _quiet,
) -> Plan:
    """`patchmap partition`: unit file → PLAN.csv (`unit_id,territory`)."""
    units = read_units_with_id(units_path, id_col)
    plan = Partitioner(
        territories, list(balance), tolerance=tolerance_pct / 100.0, id_col=id_col, seed=seed
    ).fit(units)
    plan.to_csv(out)
    _echo_plan(plan, echo)
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
    for note in plan.notes:
        log.info(note)


def map_file(
    units_path: str | os.PathLike,
    plan_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    id_col: str = "unit_id",
    fmt: str = "html",
    title: str | None = None,
    tiles: bool = True,
) -> Path:
    """`patchmap map`: units + PLAN.csv → self-contained HTML (or a static PNG/PDF)."""
    from patchmap.export import read_plan
    from patchmap.render import render_map, render_static

    units = _units_as_unit_id(read_units_with_id(units_path, id_col), id_col)
    plan = read_plan(plan_path, units)
    if fmt == "html":
        return render_map(units, plan, out, title=title, tiles=tiles)
    return render_static(units, plan, out, title=title, fmt=fmt)


def _units_as_unit_id(units: gpd.GeoDataFrame, id_col: str) -> gpd.GeoDataFrame:
    if id_col == "unit_id":
        return units
    return units.drop(columns=[c for c in ["unit_id"] if c in units.columns]).rename(columns={id_col: "unit_id"})


def export_file(
    units_path: str | os.PathLike,
    plan_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    id_col: str = "unit_id",
    accounts_path: str | os.PathLike | None = None,
    column_map: Mapping[str, str] | None = None,
    echo: Echo = _quiet,
) -> dict[str, Path]:
    """`patchmap export`: units + PLAN.csv (+ accounts) → the CRM tables and polygons."""
    from patchmap.export import export_plan, read_plan, unit_kind
    from patchmap.layers import place_accounts

    units = _units_as_unit_id(read_units_with_id(units_path, id_col), id_col)
    plan = read_plan(plan_path, units)
    accounts = None
    if accounts_path is not None:
        ingest = load_accounts(accounts_path, column_map)
        scored = score_accounts(ingest.accounts).accounts
        accounts, rejects = place_accounts(scored, units, _layer_kind(unit_kind(units)))
        rejects = _combined_rejects(ingest, rejects)
        rejects_path = Path(out_dir) / "rejects.csv"
        write_csv(rejects, rejects_path)
        _report(echo, ingest, len(accounts), rejects, rejects_path)
    return export_plan(units, plan, out_dir, accounts=accounts)


def _layer_kind(kind: str) -> str:
    """Placement rule for a unit kind: H3 cells and ZCTAs by id, other polygons by point."""
    return kind if kind in ("h3", "zcta") else "county"


@dataclass
class RunResult:
    """What `run`/`demo` produced: paths of every output and the fitted plan."""

    outputs: dict[str, Path] = field(default_factory=dict)
    plan: Plan | None = None
    ingest: IngestResult | None = None


def run_plan(config: PlanConfig, *, echo: Echo = _quiet) -> RunResult:
    """`patchmap run`: every stage from one config, outputs in ``config.out``."""
    from patchmap.export import export_plan
    from patchmap.render import render_map

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    res = RunResult()
    with progress(total=5, desc="patchmap run") as bar:
        bar.set_postfix_str("ingest")
        ingest = load_accounts(config.accounts, config.columns)
        res.ingest = ingest
        bar.update()
        bar.set_postfix_str("score + layers")
        units_path = out / "units.parquet"
        layers, scored = layers_from_accounts(
            ingest, units_path, units=config.units, resolution=config.resolution,
            region=config.region, scoring=config.scoring, echo=echo,
        )
        res.outputs["units"] = units_path
        res.outputs["rejects"] = rejects_path_for(units_path)
        scored_path = out / "accounts_scored.parquet"
        write_scored(scored, scored_path)
        res.outputs["scored"] = scored_path
        bar.update()

        bar.set_postfix_str("partition")
        plan = Partitioner(
            config.territories, config.balance, tolerance=config.tolerance_pct / 100.0,
            id_col="unit_id", seed=config.seed,
        ).fit(layers.units)
        res.plan = plan
        plan_path = out / "plan.csv"
        plan.to_csv(plan_path)
        res.outputs["plan"] = plan_path
        _echo_plan(plan, echo)
        bar.update()

        bar.set_postfix_str("map")
        plan_frame = plan.to_frame()
        res.outputs["map"] = render_map(
            layers.units, plan_frame, out / "map.html", title=config.title, tiles=config.tiles,
            plan_metrics=plan,
        )
        bar.update()
        bar.set_postfix_str("export")
        res.outputs.update(
            export_plan(layers.units, plan_frame, out, accounts=layers.placed, plan_metrics=plan)
        )
        bar.update()
    return res


def demo_config(out: str | os.PathLike) -> PlanConfig:
    """The demo: the bundled California accounts, ZCTA units, 20 territories."""
    return PlanConfig(
        accounts=example_accounts_path(),
        out=Path(out),
        units="zcta",
        region=["CA"],
        territories=20,
        balance=["potential", "accounts"],
        tolerance_pct=5.0,
        seed=0,
        title="patchmap demo: California, 20 territories balanced on revenue potential",
    )


def sample_file(region: str, n: int, seed: int, out: str | os.PathLike, *, bad_share: float = 0.0) -> Path:
    """`patchmap sample-accounts`: write synthetic accounts (CSV, Parquet or Excel by suffix)."""
    from patchmap.io import atomic_path
    from patchmap.sample import sample_accounts

    df = sample_accounts(region, n, seed, bad_share=bad_share)
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
    "RunResult", "demo_config", "example_accounts_path", "export_file", "layers_file",
    "map_file", "partition_file", "read_table", "run_plan", "sample_file", "score_file",
]
