"""`patchmap run` with ``[[segment]]`` tables: every segment planned, the outputs written.

The output folder holds the combined tables (``zip_to_rep.csv`` with one row per ZIP and
geographic segment, ``assignments.csv``, ``summary.csv`` per territory, ``segments.csv``
per segment, ``summary.md``, ``rejects.csv``, ``map.html`` with a layer per segment) and
one folder per segment under ``segments/`` with its units, plan and side files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from patchmap import crm
from patchmap.accounts import load_accounts, tally_line
from patchmap.errors import InputError
from patchmap.io import write_csv, write_markdown, write_units
from patchmap.logs import log, progress
from patchmap.options import UNIT_KINDS
from patchmap.pipeline import RunResult
from patchmap.scoring import score_accounts, scoring_config, write_scored
from patchmap.segments.named import read_named
from patchmap.segments.plan import SegmentedPlan, plan_segments
from patchmap.segments.report import assignments_table, segments_table, territory_table, zip_table
from patchmap.segments.rules import RuleError
from patchmap.segments.segment import Segment, segments_from_tables
from patchmap.units.custom import load_user_units

__all__ = ["run_segments", "segments_from_config", "segments_markdown"]

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def segments_from_config(config) -> list[Segment]:
    """The :class:`Segment` objects of a plan's ``[[segment]]`` tables (rules parsed: a
    syntax error is an InputError naming the plan file, the segment and the rule)."""
    where = f"{config.source}: " if config.source else ""
    if config.partition.get("current_accounts") is not None:
        raise InputError(f"{where}[partition] current_accounts: not with [[segment]] tables")
    try:
        return segments_from_tables(config.segments)
    except InputError as exc:
        raise InputError(f"{where}{exc}") from None


def run_segments(config, *, echo: Echo = _quiet):
    """Every stage of a segmented plan file (see the module docstring); a
    :class:`patchmap.pipeline.RunResult` with ``segments`` set to the
    :class:`~patchmap.segments.plan.SegmentedPlan`."""
    segments = segments_from_config(config)
    units_cfg = config.units
    units = _units(units_cfg)
    named = read_named(config.accounts["named"]) if config.accounts.get("named") else None
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    res = RunResult()
    sums = list(units_cfg.get("sums") or [])
    with progress(total=4, desc="patchmap run") as bar:
        bar.set_postfix_str("ingest + score")
        ingest = load_accounts(config.accounts["path"], config.accounts["columns"])
        res.ingest = ingest
        _check_rule_columns(segments, ingest.accounts.columns, config.source)
        rejected = ingest.rejects["account_id"].astype(str).tolist()
        if named is not None:  # unknown ids are errors before the model is trained
            named = named.check_accounts(ingest.accounts["account_id"].astype(str), rejected)
        scored = score_accounts(ingest.accounts, scoring_config(config.scoring))
        for note in scored.notes:
            log.info(note)
        res.outputs["scored"] = write_scored(scored, out / "accounts_scored.parquet")
        bar.update()

        bar.set_postfix_str("segments")
        sp = plan_segments(
            scored.accounts, segments, units=units, resolution=units_cfg["resolution"],
            region=units_cfg["region"], sums=sums, named=named, rejected_ids=rejected,
        )  # fmt: skip
        res.segments = sp
        for note in dict.fromkeys(sp.notes):
            log.info(note)
        bar.update()

        bar.set_postfix_str("tables")
        tables = {name: territory_table(p, sums=sums) for name, p in sp.plans.items()}
        for name, p in sp.plans.items():
            res.outputs.update(_write_segment(p, tables[name], out, write_units, write_csv))
        rejects = pd.concat([ingest.rejects.assign(segment=""), sp.rejects], ignore_index=True)
        res.outputs["rejects"] = write_csv(rejects, out / "rejects.csv")
        summary = pd.concat(
            [t.assign(segment=name)[["segment", *t.columns]] for name, t in tables.items()],
            ignore_index=True,
        )
        res.outputs["summary"] = write_csv(_rounded(summary), out / "summary.csv")
        per_segment = segments_table(sp, tables)
        res.outputs["segments"] = write_csv(_rounded(per_segment), out / "segments.csv")
        zips = zip_table(sp, tables)
        res.outputs["zip_to_rep"] = write_csv(zips, out / "zip_to_rep.csv")
        assigned = assignments_table(sp, tables, scored.accounts, sums=sums)
        res.outputs["assignments"] = write_csv(assigned, out / "assignments.csv")
        res.outputs.update(_crm_files(config, segments, out, zips, summary, assigned))
        res.outputs["summary_md"] = write_markdown(
            segments_markdown(per_segment, tables, title=config.map.get("title")),
            out / "summary.md",
        )
        bar.update()

        bar.set_postfix_str("map")
        res.outputs["map"] = _render(sp, tables, out / "map.html", config.map)
        bar.update()

    base_rejected = int((rejects["segment"] == "").sum()) + int(
        rejects["segment"].isin([s.name for s in segments if not s.overlay]).sum()
    )
    n_base = sum(len(p.assignment()) for p in sp.plans.values() if not p.segment.overlay)
    echo(tally_line(ingest.n_read, n_base, base_rejected, res.outputs["rejects"]))
    echo(sp.tally())
    for name, p in sp.plans.items():
        echo(f"  {name}: {_plan_line(p)}")
    return res


#: Columns scoring adds, which rules may use (``potential >= 50000``).
SCORED_COLUMNS = ("score", "reach", "p_win", "potential")


def _crm_files(config, segments, out: Path, zips, summary, assigned) -> dict[str, Path]:
    """``[export] format``'s CRM files, the segment as the territories' type and top level
    (see :func:`patchmap.crm.write_salesforce_segments`, :func:`~patchmap.crm.write_hubspot_segments`)."""
    formats = config.export.get("formats") or "csv"
    wanted = {formats} if isinstance(formats, str) else set(formats)
    if "all" in wanted:
        wanted = set(crm.FORMATS)
    written: dict[str, Path] = {}
    if "salesforce" in wanted:
        written.update(crm.write_salesforce_segments(
            out, zips, summary, accounts=assigned,
            model=config.export.get("salesforce_model") or "Patchmap",
        ))  # fmt: skip
    if "hubspot" in wanted:
        written.update(crm.write_hubspot_segments(
            out, assigned, overlays=[s.name for s in segments if s.overlay]
        ))  # fmt: skip
    return written


def _check_rule_columns(segments, columns, source) -> None:
    """Unknown columns in the rules, before the model is trained."""
    have = [*map(str, columns), *SCORED_COLUMNS]
    for seg in segments:
        try:
            seg.where.check_columns(have)
        except RuleError as exc:
            raise InputError(f"{source or 'plan'}: {seg.label}: {exc}") from None


def _units(units_cfg):
    """The run's unit kind, or the user's own polygons read and checked."""
    kind = units_cfg["units"]
    if str(kind) in UNIT_KINDS:
        return str(kind)

    layer, _ = load_user_units(kind, units_cfg["unit_id"])
    return layer


def _plan_line(p) -> str:
    t = "national books" if p.plan is None else f"{p.kind} units"
    devs = p.plan.max_deviations if p.plan is not None else p.books.max_deviations
    dev = ", ".join(f"{c} {100 * v:.2f}%" for c, v in devs.items())
    named = f", {len(p.named)} named" if len(p.named) else ""
    extra = ""
    if p.plan is not None:
        extra = f", {'contiguous' if p.plan.contiguous else 'NOT contiguous'}"
    return f"{len(p.territories)} territories ({t}{named}): max deviation {dev}{extra}"


def _write_segment(p, table: pd.DataFrame, out: Path, write_units, write_csv) -> dict[str, Path]:
    """A segment's own folder: its units, plan and side files, territory summary."""
    folder = out / "segments" / p.segment.slug
    folder.mkdir(parents=True, exist_ok=True)
    key = f"segment:{p.segment.name}"
    written: dict[str, Path] = {}
    if p.plan is not None:
        written[f"{key}:units"] = write_units(p.units, folder / "units.parquet")
        written[f"{key}:plan"] = p.plan.to_csv(folder / "plan.csv")
        for name, path in p.plan.write_side_files(folder / "plan.csv").items():
            written[f"{key}:{name}"] = path
    else:
        books = p.books.assignment.rename_axis("account_id").reset_index()
        written[f"{key}:books"] = write_csv(books, folder / "books.csv")
    written[f"{key}:summary"] = write_csv(_rounded(table), folder / "summary.csv")
    return written


def _rounded(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            fraction = c.endswith("deviation") or c in ("target_share", "polsby_popper")
            out[c] = out[c].round(6 if fraction else 2)
    return out


def _fmt(v, col: str) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if col.endswith("deviation"):
        return f"{100 * float(v):+.1f}%"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "**no**"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):,.0f}"
    return str(v).replace("|", "\\|")


def _md_table(t: pd.DataFrame, cols: list[str]) -> list[str]:
    cols = [c for c in cols if c in t.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in t[cols].itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, c) for v, c in zip(row, cols, strict=True)) + " |")
    return lines


def segments_markdown(
    per_segment: pd.DataFrame, tables: dict[str, pd.DataFrame], *, title: str | None = None
) -> str:
    """summary.md: the segments side by side, then each segment's territories."""
    lines = [f"# {title or 'Territory plan by segment'}", ""]
    lines += _md_table(per_segment, ["segment", "layer", "units", "territories", "accounts",
                                     "named_accounts", "potential", "reach", "quota",
                                     "recommended_reps", "max_deviation", "rejected"])  # fmt: skip
    for _, row in per_segment.iterrows():
        name = row["segment"]
        lines += ["", f"## {name}", "", f"- rule: `{row['rule']}`", f"- layer: {row['layer']}",
                  f"- units: {row['units']}", f"- balanced on: {row['balance']}", ""]  # fmt: skip
        lines += _md_table(tables[name], ["territory", "rep_id", "rep_name", "accounts",
                                          "named_accounts", "potential", "reach", "deviation",
                                          "quota", "recommended_reps", "contiguous"])  # fmt: skip
    return "\n".join(lines) + "\n"


def _render(sp: SegmentedPlan, tables, out_path: Path, map_cfg) -> Path:
    from patchmap.render import render_segments  # folium: loaded only to draw a map

    return render_segments(sp, tables, out_path, title=map_cfg.get("title"),
                           tiles=map_cfg.get("tiles", False))  # fmt: skip
