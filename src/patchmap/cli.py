"""Command-line interface: click commands only, each a thin shell over a library function.

Bad input surfaces as one line ``error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from patchmap.errors import InputError

COLUMN_HELP = "Map a column name: NAME=SOURCE, e.g. --column lat=Latitude (repeatable)."
TILES_HELP = "Add an OpenStreetMap basemap (online). Off by default: the map opens offline."


def _quota_options(where: str):
    """--quota, --quota-floor and --quota-cap, shared by partition and export."""

    def wrap(f):
        f = click.option(
            "--quota-cap",
            "quota_cap",
            default=None,
            help="Largest quota: an amount or a percent of the mean, e.g. 150%.",
        )(f)
        f = click.option(
            "--quota-floor",
            "quota_floor",
            default=None,
            help="Smallest quota: an amount or a percent of the mean, e.g. 80%.",
        )(f)
        return click.option(
            "--quota",
            type=float,
            default=None,
            help=f"Company target to split across territories by potential ({where}).",
        )(f)

    return wrap


def _columns(pairs: tuple[str, ...]) -> dict[str, str]:
    from patchmap.accounts import parse_column_map

    return parse_column_map(pairs)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class _Group(click.Group):
    """Every error is one line on stderr: bad input and usage exit 2, a bug exits 1."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except click.ClickException as exc:  # usage errors: one line, not click's usage block
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        except Exception as exc:  # a bug, not bad input: still one line unless debugging
            if os.environ.get("PATCHMAP_DEBUG"):
                raise
            click.echo(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set PATCHMAP_DEBUG=1 for the traceback)",
                err=True,
            )
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Group)
@click.version_option(package_name="patchmap")
@click.option(
    "--quiet", "-q", is_flag=True, help="Only results and errors: no notes, no progress bars."
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Level of the notes printed on stderr.",
)
def main(quiet: bool, log_level: str) -> None:
    """patchmap: balanced, contiguous, compact sales territories from a table of accounts."""
    from patchmap.logs import configure

    configure(log_level, quiet=quiet)


@main.command("sample-accounts")
@click.option("--region", default="CA", show_default=True, help="State code(s), e.g. CA or RI,DE.")
@click.option("--n", "n", type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--bad-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of rows given a realistic defect (to exercise rejects).",
)
@click.option("--out", type=click.Path(dir_okay=False), required=True)
def sample_accounts_cmd(region: str, n: int, seed: int, bad_share: float, out: str) -> None:
    """Make realistic synthetic B2B accounts placed by real ZCTA population."""
    from patchmap.pipeline import sample_file

    click.echo(str(sample_file(region, n, seed, out, bad_share=bad_share)))


@main.command("score")
@click.argument("accounts", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--column", "columns", multiple=True, help=COLUMN_HELP)
def score_cmd(accounts: str, out: str, columns: tuple[str, ...]) -> None:
    """Score accounts (look-alike model or rules) and compute reach."""
    from patchmap.pipeline import score_file

    score_file(accounts, out, column_map=_columns(columns), echo=click.echo)


@main.command("layers")
@click.argument("accounts", type=click.Path())
@click.option(
    "--units",
    "unit_kind",
    required=True,
    help="h3, zcta, county, or your own polygon file (with --unit-id).",
)
@click.option("--unit-id", default=None, help="Id column of your own polygon file.")
@click.option(
    "--resolution",
    type=click.IntRange(0, 15),
    default=7,
    show_default=True,
    help="H3 resolution (0-15).",
)
@click.option("--region", default=None, help="State code(s); default: where the accounts are.")
@click.option("--column", "columns", multiple=True, help=COLUMN_HELP)
@click.option(
    "--engine",
    type=click.Choice(["pandas", "dask"]),
    default="pandas",
    show_default=True,
    help="dask: stream a (partitioned) Parquet dataset through a Dask cluster.",
)
@click.option(
    "--scheduler",
    default=None,
    help="Dask scheduler ADDRESS (default: a LocalCluster sized to this machine).",
)
@click.option("--out", type=click.Path(dir_okay=False), required=True)
def layers_cmd(
    accounts: str,
    unit_kind: str,
    unit_id: str | None,
    resolution: int,
    region: str | None,
    columns: tuple[str, ...],
    engine: str,
    scheduler: str | None,
    out: str,
) -> None:
    """Aggregate accounts into H3 / ZCTA / county units with score and reach layers."""
    from patchmap.pipeline import layers_file

    result = layers_file(
        accounts,
        out,
        units=unit_kind,
        resolution=resolution,
        region=region,
        column_map=_columns(columns),
        unit_id=unit_id,
        engine=engine,
        scheduler=scheduler,
        echo=click.echo,
    )
    click.echo(f"{len(result.units)} units -> {out}")


@main.command("partition")
@click.argument("units", type=click.Path())
@click.option("--id", "id_col", required=True, help="Unit id column.")
@click.option("--balance", required=True, help="Column(s) to balance, primary first: a,b.")
@click.option(
    "--territories",
    type=int,
    default=None,
    help="Number of territories K (required unless --reps or --current gives it).",
)
@click.option(
    "--tolerance",
    type=float,
    default=5.0,
    show_default=True,
    help="Allowed deviation from the mean, percent (secondary measures; with "
    "--current every measure).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--reps",
    type=click.Path(),
    default=None,
    help="REPS.csv: rep_id, lat/lon or zip[, capacity, segment]: one territory per "
    "rep, grown from the rep's home (writes reps.csv).",
)
@click.option(
    "--current",
    type=click.Path(),
    default=None,
    help="CURRENT.csv (unit_id,territory): realign this plan, moving little (writes moves.csv).",
)
@click.option(
    "--max-moved",
    "max_moved",
    type=float,
    default=None,
    help="With --current: move at most this percent of the primary measure.",
)
@click.option(
    "--relax",
    type=click.Choice(["tolerance", "budget"]),
    default="tolerance",
    show_default=True,
    help="What gives way when --max-moved and --tolerance cannot both hold.",
)
@click.option(
    "--locked",
    type=click.Path(),
    default=None,
    help="LOCKED.csv (unit_id,territory): units that stay where they are.",
)
@click.option("--within", default=None, help="Column (e.g. state) no territory may cross.")
@click.option(
    "--regions",
    type=int,
    default=None,
    help="Two-level plan: N regions, territories nested in them (writes regions.csv).",
)
@_quota_options("writes quota.csv")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
def partition_cmd(
    units: str,
    id_col: str,
    balance: str,
    territories: int | None,
    tolerance: float,
    seed: int,
    reps: str | None,
    current: str | None,
    max_moved: float | None,
    relax: str,
    locked: str | None,
    within: str | None,
    regions: int | None,
    quota: float | None,
    quota_floor: str | None,
    quota_cap: str | None,
    out: str,
) -> None:
    """Split units into K contiguous, balanced, compact territories: PLAN.csv."""
    from patchmap.pipeline import partition_file

    partition_file(
        units,
        out,
        id_col=id_col,
        balance=_split(balance),
        territories=territories,
        tolerance_pct=tolerance,
        seed=seed,
        reps=reps,
        current=current,
        max_moved_pct=max_moved,
        relax=relax,
        locked=locked,
        within=within,
        regions=regions,
        quota=quota,
        quota_floor=quota_floor,
        quota_cap=quota_cap,
        echo=click.echo,
    )
    click.echo(f"plan -> {out}")


@main.command("compare")
@click.argument("plan_a", type=click.Path())
@click.argument("plan_b", type=click.Path())
@click.option(
    "--units",
    "units_path",
    type=click.Path(),
    default=None,
    help="Unit file: adds balance, compactness, cut edges, travel and the map.",
)
@click.option("--id", "id_col", default="unit_id", show_default=True)
@click.option("--balance", default=None, help="Measures to compare, primary first: a,b.")
@click.option(
    "--reps",
    type=click.Path(),
    default=None,
    help="REPS.csv: travel from the reps' homes (territories labelled by rep_id).",
)
@click.option("--tiles/--no-tiles", default=False, show_default=True, help=TILES_HELP)
@click.option("--out", type=click.Path(file_okay=False), required=True)
def compare_cmd(
    plan_a: str,
    plan_b: str,
    units_path: str | None,
    id_col: str,
    balance: str | None,
    reps: str | None,
    tiles: bool,
    out: str,
) -> None:
    """Compare two plans: compare.csv, compare.md and a map of both (compare.html)."""
    from patchmap.pipeline import compare_file

    paths = compare_file(
        plan_a,
        plan_b,
        out,
        units_path=units_path,
        id_col=id_col,
        balance=_split(balance) if balance else None,
        reps=reps,
        tiles=tiles,
        echo=click.echo,
    )
    for name in sorted(paths):
        click.echo(f"{name}: {paths[name]}")


@main.command("map")
@click.argument("units", type=click.Path())
@click.argument("plan", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.option("--id", "id_col", default="unit_id", show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["html", "png", "pdf"]), default="html", show_default=True
)
@click.option("--title", default=None)
@click.option("--tiles/--no-tiles", default=False, show_default=True, help=TILES_HELP)
@click.option("--reps", type=click.Path(), default=None, help="REPS.csv: show home markers.")
def map_cmd(
    units: str,
    plan: str,
    out: str,
    id_col: str,
    fmt: str,
    title: str | None,
    tiles: bool,
    reps: str | None,
) -> None:
    """Render the plan: a self-contained HTML map, or a static PNG/PDF."""
    from patchmap.pipeline import map_file

    click.echo(
        str(map_file(units, plan, out, id_col=id_col, fmt=fmt, title=title, tiles=tiles, reps=reps))
    )


@main.command("export")
@click.argument("units", type=click.Path())
@click.argument("plan", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--id", "id_col", default="unit_id", show_default=True)
@click.option(
    "--accounts", type=click.Path(), default=None, help="Accounts file, for assignments.csv."
)
@click.option("--column", "columns", multiple=True, help=COLUMN_HELP)
@click.option(
    "--reps",
    type=click.Path(),
    default=None,
    help="REPS.csv: rep per territory (territory column, rep_id = label, or home).",
)
@click.option(
    "--capacity",
    default=None,
    help="Accounts per rep (e.g. 150) or COLUMN=AMOUNT per rep (e.g. "
    "potential=2000000): recommended headcount in summary.csv.",
)
@_quota_options("summary.csv")
def export_cmd(
    units: str,
    plan: str,
    out: str,
    id_col: str,
    accounts: str | None,
    columns: tuple[str, ...],
    reps: str | None,
    capacity: str | None,
    quota: float | None,
    quota_floor: str | None,
    quota_cap: str | None,
) -> None:
    """Write zip_to_rep.csv, assignments.csv, territories.geojson/.gpkg, summary.csv/.md."""
    from patchmap.pipeline import export_file

    paths = export_file(
        units,
        plan,
        out,
        id_col=id_col,
        accounts_path=accounts,
        column_map=_columns(columns),
        reps=reps,
        capacity=capacity,
        quota=quota,
        quota_floor=quota_floor,
        quota_cap=quota_cap,
        echo=click.echo,
    )
    for name in sorted(paths):
        click.echo(f"{name}: {paths[name]}")


@main.command("run")
@click.argument("config", type=click.Path())
def run_cmd(config: str) -> None:
    """Run every stage from one plan file (TOML)."""
    from patchmap.config import load_config
    from patchmap.pipeline import run_plan

    result = run_plan(load_config(config), echo=click.echo)
    click.echo(f"map: {result.outputs['map']}")


@main.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="out/demo", show_default=True)
@click.option("--tiles/--no-tiles", default=False, show_default=True, help=TILES_HELP)
def demo_cmd(out: str, tiles: bool) -> None:
    """Run the whole chain on the bundled California accounts into 20 territories."""
    from patchmap.pipeline import demo_config, run_plan

    result = run_plan(demo_config(out, tiles=tiles), echo=click.echo)
    for name in sorted(result.outputs):
        click.echo(f"{name}: {result.outputs[name]}")
    click.echo(f"map: {Path(result.outputs['map']).resolve()}")


@main.group("geodata")
def geodata_group() -> None:
    """National Census geography: fetch it once into the cache, list what is there."""


@geodata_group.command("fetch")
@click.argument("kind", type=click.Choice(["zcta", "county", "state"]))
@click.option("--year", type=int, default=None, help="Vintage (default: the newest known).")
@click.option("--source", default=None, help="A local zip/shapefile/GeoPackage or a URL instead.")
@click.option("--refresh", is_flag=True, help="Download again even when cached.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def geodata_fetch_cmd(
    kind: str, year: int | None, source: str | None, refresh: bool, quiet: bool
) -> None:
    """Download, verify (SHA-256 recorded), convert and register Census polygons."""
    from patchmap.geofetch import fetch_geodata

    result = fetch_geodata(kind, year=year, source=source, refresh=refresh, progress=not quiet)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    state = "from cache" if result.cached else "fetched"
    click.echo(f"{kind} {result.vintage}: {result.units} units {state}, sha256 {result.sha256}")
    for level, path in sorted(result.paths.items()):
        click.echo(f"{level}: {path}")


@geodata_group.command("list")
def geodata_list_cmd() -> None:
    """What is bundled and what is cached: kind, vintage, units, size."""
    from patchmap.geofetch import list_geodata

    table = list_geodata()
    if table.empty:
        click.echo("no geodata found")
        return
    table = table.assign(size=(table["size"] / 1e6).round(2).astype(str) + " MB")
    click.echo(table.drop(columns=["sha256"], errors="ignore").to_string(index=False))
