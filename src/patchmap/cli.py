"""Command-line interface: click commands only, each a thin shell over a library function.

Bad input surfaces as one line ``error: ...`` and exit status 2, never a traceback.
Each command imports its library function when it runs (the only function-local imports
of patchmap modules besides the map renderer's): ``patchmap --help`` or a usage error
then takes ~0.1 s, not the ~2 s of importing geopandas, scikit-learn and the engine.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from patchmap.errors import InputError, Terminated
from patchmap.options import CLI, OptionError, click_options


class _Group(click.Group):
    """Every error is one line on stderr: bad input and usage exit 2, a bug exits 1."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        previous = _handle_termination()
        try:
            code = super().main(*args, **kwargs)
        except Terminated as exc:  # temporary files are gone: the finally blocks ran
            done = "its outputs were written first" if exc.written else "nothing written"
            click.echo(f"terminated (signal {exc.signum}): {done}", err=True)
            sys.exit(128 + exc.signum)
        except OptionError as exc:  # library words -> flags
            click.echo(f"error: {exc.worded(CLI)}", err=True)
            sys.exit(2)
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except click.ClickException as exc:  # usage errors: one line, not click's usage block
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("aborted: nothing written", err=True)
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
        finally:
            io = sys.modules.get("patchmap.io")  # not imported: no temporary file to remove
            if io is not None:
                io.remove_temporary_files()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        sys.exit(code if isinstance(code, int) else 0)


def _handle_termination() -> dict:
    """SIGTERM and SIGHUP unwind like Ctrl-C (:class:`Terminated`), so a command killed
    politely removes its temporary files and leaves its outputs as they were."""

    def raise_terminated(signum, _frame):
        io = sys.modules.get("patchmap.io")  # not imported: nothing is being written
        if io is not None and io.defer_signal(signum):
            return  # raised when the held block (a commit, a temporary file's birth) ends
        raise Terminated(signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            try:
                previous[signum] = signal.signal(signum, raise_terminated)
            except ValueError:  # not the main thread (e.g. CliRunner in a worker thread)
                pass
    return previous


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
@click_options("sample-accounts")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
def sample_accounts_cmd(out: str, **settings) -> None:
    """Make realistic synthetic B2B accounts placed by real ZCTA population."""
    from patchmap.pipeline import sample_file

    click.echo(str(sample_file(out, **settings)))


@main.command("score")
@click.argument("accounts", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click_options("score")
def score_cmd(accounts: str, out: str, **settings) -> None:
    """Score accounts (look-alike model or rules) and compute reach."""
    from patchmap.pipeline import score_file

    score_file(accounts, out, echo=click.echo, **settings)


@main.command("layers")
@click.argument("accounts", type=click.Path())
@click_options("layers")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
def layers_cmd(accounts: str, out: str, **settings) -> None:
    """Aggregate accounts into H3 / ZCTA / county units with score and reach layers."""
    from patchmap.pipeline import layers_file

    result = layers_file(accounts, out, echo=click.echo, **settings)
    click.echo(f"{len(result.units)} units -> {out}")


@main.command("partition")
@click.argument("units", type=click.Path())
@click_options("partition")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
def partition_cmd(units: str, out: str, **settings) -> None:
    """Split units into K contiguous, balanced, compact territories: PLAN.csv."""
    from patchmap.pipeline import partition_file

    partition_file(units, out, echo=click.echo, **settings)
    click.echo(f"plan -> {out}")


@main.command("evaluate")
@click.argument("units", type=click.Path())
@click.argument("plan", type=click.Path())
@click_options("evaluate")
def evaluate_cmd(units: str, plan: str, **settings) -> None:
    """Measure a plan as it is (e.g. one edited on the map): balance, contiguity, cut edges."""
    from patchmap.pipeline import evaluate_file

    evaluate_file(units, plan, echo=click.echo, **settings)


@main.command("compare")
@click.argument("plan_a", type=click.Path())
@click.argument("plan_b", type=click.Path())
@click_options("compare")
@click.option("--out", type=click.Path(file_okay=False), required=True)
def compare_cmd(plan_a: str, plan_b: str, out: str, **settings) -> None:
    """Compare two plans: compare.csv, compare.md and a map of both (compare.html)."""
    from patchmap.pipeline import compare_file

    paths = compare_file(plan_a, plan_b, out, echo=click.echo, **settings)
    for name in sorted(paths):
        click.echo(f"{name}: {paths[name]}")


@main.command("diff")
@click.argument("old_plan", type=click.Path())
@click.argument("new_plan", type=click.Path())
@click_options("diff")
@click.option("--out", type=click.Path(file_okay=False), required=True)
def diff_cmd(old_plan: str, new_plan: str, out: str, **settings) -> None:
    """What changed for whom: owner changes per ZIP and account, new and lost accounts,
    totals per rep, and why territories stay off target (diff.md)."""
    from patchmap.pipeline import diff_file

    paths = diff_file(old_plan, new_plan, out, echo=click.echo, **settings)
    for name in sorted(paths):
        click.echo(f"{name}: {paths[name]}")


@main.command("map")
@click.argument("units", type=click.Path())
@click.argument("plan", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click_options("map")
def map_cmd(units: str, plan: str, out: str, **settings) -> None:
    """Render the plan: a self-contained HTML map, or a static PNG/PDF."""
    from patchmap.pipeline import map_file

    click.echo(str(map_file(units, plan, out, **settings)))


@main.command("export")
@click.argument("units", type=click.Path())
@click.argument("plan", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click_options("export")
def export_cmd(units: str, plan: str, out: str, **settings) -> None:
    """Write zip_to_rep.csv, assignments.csv, territories.geojson/.gpkg, summary.csv/.md."""
    from patchmap.pipeline import export_file

    paths = export_file(units, plan, out, echo=click.echo, **settings)
    for name in sorted(paths):
        click.echo(f"{name}: {paths[name]}")


@main.command("run")
@click.argument("config", type=click.Path())
def run_cmd(config: str) -> None:
    """Run every stage from one plan file (TOML)."""
    from patchmap.config import load_config
    from patchmap.run import run_config

    plan = load_config(config)
    try:
        result = run_config(plan, echo=click.echo)
    except OptionError as exc:  # library words -> the plan file's keys
        raise InputError(plan.worded(exc)) from None
    click.echo(f"map: {result.outputs['map']}")


@main.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="out/demo", show_default=True)
@click_options("demo")
def demo_cmd(out: str, tiles: bool, effort: float) -> None:
    """Run the whole chain on the bundled California accounts into 20 territories."""
    from patchmap.pipeline import demo_config, run_plan

    result = run_plan(demo_config(out, tiles=tiles, effort=effort), echo=click.echo)
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
