"""Every setting a user can give patchmap, declared once.

An :class:`Option` says, in one place, what a setting is called on the command line
(``flag``), in a plan file (``table`` and ``key``) and in the library (``name``), what
values it takes (``kind``, ``choices``, ``low``/``high``), its default, its help text and
its unit. Everything else is generated from these declarations:

- the click options of every command (:func:`click_options`, used by :mod:`patchmap.cli`);
- the plan-file schema, table by table (:func:`read_table`, used by :mod:`patchmap.config`):
  unknown keys, wrong types and out-of-range values are one-line errors naming the key;
- the keyword arguments of the file-level stage functions of :mod:`patchmap.pipeline`
  (:func:`takes`: their signature, the check of what a library caller passed, defaults);
- the only percent <-> fraction conversion: an option with ``unit="percent"`` is typed in
  percent by a user (``--tolerance 5``, ``tolerance = 5``) and is a fraction in the
  library (``tolerance=0.05``). Defaults, ranges and the library speak fractions.

There is one validator (:meth:`Option.check`). Its messages are worded for whoever gave
the value (an :class:`Audience`): percent and flags on the command line, percent and keys
in a plan file, fractions and keyword names in the library. Rules between options
(``requires``) and errors the library raises about options (:func:`error`) are
:class:`OptionError`\\ s, written in library words; the CLI and the plan-file loader
re-word them with flags or keys.

Adding an option
----------------
1. Declare it in :data:`OPTIONS`, beside its stage::

       Option(
           "time_limit", NUMBER, None, "Stop the search after this long.",
           commands=("partition",), table="partition", low=0, low_open=True, unit="seconds",
       ),

   ``commands`` are the CLI commands that take it (``--time-limit``, from the name;
   give ``flag=`` for another spelling); ``table`` is the plan-file table that accepts
   it (``[partition] time_limit = 30``; ``key=`` for another key). The kinds are
   :data:`INT`, :data:`NUMBER`, :data:`TEXT`, :data:`BOOL` (``flag="--x/--no-x"``),
   :data:`FILE`, :data:`FOLDER`, :data:`NAMES` (``a,b`` or a list), :data:`AMOUNT`,
   :data:`CAPACITY`, :data:`COLUMN_MAP`; ``choices=`` limits text. ``default`` is in
   library units. ``unit="percent"`` makes users type percent (other units are only
   shown in the help); ``requires=("current",)`` says it needs another option
   (``(("engine", "dask"),)``: needs that value). Library code raises
   ``error("partition", "{time_limit} ...")`` for a problem with an option: the CLI shows
   ``--time-limit``, a plan file ``time_limit``.
2. Use it. The command's pipeline function (``@takes("partition")``) now receives
   ``time_limit=`` (checked, default filled, library units) in its ``**settings``; the
   CLI command passes it through untouched. ``patchmap run`` finds it, checked, in
   ``config.partition["time_limit"]`` (a new table is a new ``config.<table>``).
   Nothing else is declared anywhere: no click decorator, no config field, no kwarg.
3. Test it through the CLI and a plan file (a bad value must be exit 2 naming the flag /
   the key); ``tests/test_options.py`` checks every declaration's help and default.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchmap.errors import InputError

__all__ = [
    "AMOUNT",
    "ARRAY_TABLES",
    "BOOL",
    "CAPACITY",
    "CLI",
    "COLUMN_MAP",
    "COUNT_OR_AUTO",
    "FILE",
    "FOLDER",
    "INT",
    "NAMES",
    "NUMBER",
    "TEXT",
    "TOLERANCE",
    "UNIT_KINDS",
    "LIBRARY",
    "OPTIONS",
    "PLAN",
    "SCORING_MODELS",
    "Audience",
    "Kind",
    "Option",
    "OptionError",
    "click_options",
    "default",
    "did_you_mean",
    "error",
    "for_command",
    "for_table",
    "fraction_from_percent",
    "option",
    "percent_from_fraction",
    "read_table",
    "resolve",
    "takes",
]


# --------------------------------------------------------------------------- units


def fraction_from_percent(value: float) -> float:
    """5 (percent) -> 0.05: the one place a percent becomes a fraction."""
    return float(value) / 100.0


def percent_from_fraction(value: float) -> float:
    """0.05 -> 5 (percent), without the float noise of ``0.05 * 100``."""
    return round(float(value) * 100.0, 12)


# --------------------------------------------------------------------------- audiences


@dataclass(frozen=True)
class Audience:
    """Who gave a value: how to name an option to them and which units they speak."""

    name: str
    user_units: bool  # percent options in percent (users) or fractions (library)

    def label(self, opt: Option) -> str:
        if self.name == "cli":
            return opt.cli_flag or opt.name
        if self.name == "plan":
            return opt.plan_key or opt.name
        return opt.name

    def setting(self, opt: Option, value: Any) -> str:
        """An option set to a value, as this audience would write it."""
        if self.name == "cli":
            return f"{self.label(opt)} {value}"
        if self.name == "plan":
            return f"{self.label(opt)} = {value!r}"
        return f"{opt.name}={value!r}"


CLI = Audience("cli", True)
PLAN = Audience("plan", True)
LIBRARY = Audience("library", False)


class OptionError(InputError):
    """A bad option value or combination, in library words until re-worded.

    ``template`` names options as ``{name}`` (the library keyword) or ``{name=value}``
    (the option set to a value); :meth:`worded` writes them as the audience does: the
    flag, the plan-file key or the keyword.
    """

    def __init__(self, template: str, options: Mapping[str, Option]) -> None:
        self.template = template
        self.options = dict(options)
        super().__init__(self.worded(LIBRARY))

    def __reduce__(self):  # pickling (a Dask worker's error reaches the client as itself)
        index = {id(o): i for i, o in enumerate(OPTIONS)}
        return _option_error, (self.template, {k: index[id(o)] for k, o in self.options.items()})

    @property
    def table(self) -> str | None:
        """The plan-file table of the first option the message names (None: none has one)."""
        for m in re.finditer(r"\{(\w+)", self.template):
            opt = self.options.get(m.group(1))
            if opt is not None and opt.table:
                return opt.table
        return None

    def worded(self, audience: Audience) -> str:
        def name(m: re.Match) -> str:
            key, value = m.group(1), m.group(2)
            opt = self.options.get(key)
            if opt is None:
                return m.group(0)
            if audience.name == "library":  # the caller's keyword, which may differ from opt.name
                return key if value is None else f"{key}={value!r}"
            if value is None:
                return audience.label(opt)
            return audience.setting(opt, value)

        return re.sub(r"\{(\w+)(?:=([^{}]*))?\}", name, self.template)


def _option_error(template: str, indices: Mapping[str, int]) -> OptionError:
    return OptionError(template, {k: OPTIONS[i] for k, i in indices.items()})


# --------------------------------------------------------------------------- kinds


def _is_int(v: Any) -> bool:
    import numpy as np

    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v: Any) -> bool:
    import numpy as np

    return _is_int(v) or isinstance(v, (float, np.floating))


def _names(value: Any) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value]


def _is_names(v: Any) -> bool:
    return isinstance(v, str) or (
        isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)
    )


def _column_map(value: Any) -> dict[str, str] | None:
    """``("lat=Latitude", ...)`` (CLI) or ``{"lat": "Latitude"}`` -> a dict (None if empty)."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()} or None
    out: dict[str, str] = {}
    for pair in value:
        name, sep, source = pair.partition("=")
        if not sep or not name.strip() or not source.strip():
            raise InputError(f"expected NAME=SOURCE, got {pair!r}")
        out[name.strip()] = source.strip()
    return out or None


@dataclass(frozen=True)
class Kind:
    """What values an option takes.

    ``accepts`` tells whether a value (from a plan file or a library caller) is of this
    kind; ``parse`` normalises it (``"a,b"`` -> ``["a", "b"]``); ``click`` is the click
    type the flag is read with (None: a boolean flag); ``multiple`` repeats the flag.
    """

    words: str
    accepts: Callable[[Any], bool]
    click: Any = "text"
    parse: Callable[[Any], Any] | None = None
    multiple: bool = False
    path: bool = False  # a path: plan files give it relative to the plan file

    def click_type(self) -> Any:
        import click

        if self.click == "int":
            return click.INT
        if self.click == "float":
            return click.FLOAT
        if self.click == "path":
            return click.Path()
        return click.STRING


INT = Kind("an integer", _is_int, "int", int)
NUMBER = Kind("a number", _is_number, "float", float)
TEXT = Kind("text", lambda v: isinstance(v, str))
BOOL = Kind("true or false", lambda v: isinstance(v, bool), None)
FILE = Kind("a file path", lambda v: isinstance(v, (str, os.PathLike)), "path", Path, path=True)
FOLDER = Kind("a folder path", FILE.accepts, "path", Path, path=True)
NAMES = Kind("a name or a list of names", _is_names, "text", _names)
#: an amount, or a percent of the mean as text ("80%"): :mod:`patchmap.quota` reads it
AMOUNT = Kind("an amount or a percent such as '80%'", lambda v: _is_number(v) or isinstance(v, str))
#: accounts per rep (150), or COLUMN=AMOUNT per rep as text or a table
CAPACITY = Kind(
    "a number, 'COLUMN=AMOUNT' or a table",
    lambda v: _is_number(v) or isinstance(v, (str, Mapping)),
    parse=lambda v: dict(v) if isinstance(v, Mapping) else v,
)
#: a count, or "auto": as many as the capacity rule recommends
COUNT_OR_AUTO = Kind(
    "an integer or 'auto'",
    lambda v: _is_int(v) or (isinstance(v, str) and (v == "auto" or v.strip().isdigit())),
    parse=lambda v: v if v == "auto" else int(v),
)
COLUMN_MAP = Kind(
    "a table of NAME = SOURCE column names",
    lambda v: (
        (isinstance(v, Mapping) and all(isinstance(x, str) for x in v.values()))
        or (isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v))
    ),
    parse=_column_map,
    multiple=True,
)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Option:
    """One setting: its names on the command line, in a plan file and in the library."""

    name: str  # library keyword (and the default plan key; flag is --name-with-dashes)
    kind: Kind
    default: Any  # library units
    help: str
    commands: tuple[str, ...] = ()  # CLI commands that take it
    table: str | None = None  # plan-file table that accepts it
    key: str | None = None  # plan-file key, when not ``name``
    flag: str | None = None  # CLI flag(s), when not ``--name``; e.g. "--tiles/--no-tiles"
    short: str | None = None  # a one-letter alias, e.g. "-q"
    unit: str | None = None  # "percent": users give percent, the library a fraction; else
    # words shown in the help (e.g. "seconds")
    low: float | None = None  # library units
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    required: bool = False  # the command line (or plan file) must give it
    requires: tuple[str | tuple[str, Any], ...] = ()  # options this one needs set
    metavar: str | None = None

    @property
    def cli_flag(self) -> str | None:
        """The flag as users type it (``--tiles`` of ``--tiles/--no-tiles``)."""
        if not self.commands:
            return None
        return (self.flag or "--" + self.name.replace("_", "-")).split("/")[0]

    @property
    def plan_key(self) -> str | None:
        return (self.key or self.name) if self.table else None

    # ------------------------------------------------------------------ checking
    def _in_units(self, x: float, audience: Audience) -> float:
        return percent_from_fraction(x) if self.unit == "percent" and audience.user_units else x

    def expected(self, audience: Audience) -> str:
        """What this option expects, in the audience's words and units."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        words = self.kind.words
        if self.unit == "percent":
            words = "a percentage" if audience.user_units else "a fraction (0.05 = 5%)"
        if self.low is None and self.high is None:
            return words
        lo, hi = (None if b is None else self._in_units(b, audience) for b in (self.low, self.high))
        if lo is not None and hi is not None:
            return (
                f"{words} in {'(' if self.low_open else '['}{lo:g}, {hi:g}"
                f"{')' if self.high_open else ']'}"
            )
        if lo is not None:
            return f"{words} {'>' if self.low_open else '>='} {lo:g}"
        return f"{words} {'<' if self.high_open else '<='} {hi:g}"

    def check(self, value: Any, audience: Audience, where: str = "") -> Any:
        """The value in library units, or :class:`InputError` worded for ``audience``.

        ``where`` prefixes the message (a plan file's path and table). None is "not given"
        and passes; a user's percent becomes a fraction.
        """
        if value is None:
            return None
        label = f"{where}{audience.label(self)}"
        bad = f"{label}: expected {self.expected(audience)}, got"
        if not self.kind.accepts(value):
            raise InputError(f"{bad} {type(value).__name__} {value!r}")
        try:
            parsed = self.kind.parse(value) if self.kind.parse else value
        except (InputError, TypeError, ValueError) as exc:
            raise InputError(f"{label}: {exc}") from None
        if self.choices and parsed not in self.choices:
            raise InputError(f"{bad} {value!r}")
        if _is_number(parsed) and not isinstance(parsed, bool):
            if not math.isfinite(float(parsed)):
                raise InputError(f"{bad} {value!r}")
            if self.unit == "percent" and audience.user_units:
                parsed = fraction_from_percent(parsed)
            if not self._in_range(float(parsed)):
                raise InputError(f"{bad} {value!r}")
        return parsed

    def _in_range(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        return self.high is None or not (x > self.high or (self.high_open and x == self.high))

    # ------------------------------------------------------------------ click
    def click_decorator(self) -> Callable:
        import click

        decls = [self.flag or "--" + self.name.replace("_", "-")]
        if self.short:
            decls.append(self.short)
        user_default = self.default
        if self.unit == "percent" and isinstance(self.default, float):
            user_default = percent_from_fraction(self.default)
        kw: dict[str, Any] = {"help": self.help + (f" In {self.unit}." if self.unit else "")}
        if self.kind.click is None:  # boolean
            kw.update(default=bool(self.default), show_default=True)
            if "/" not in decls[0]:
                kw["is_flag"] = True
        else:
            kw["type"] = (
                click.Choice(self.choices, case_sensitive=True)
                if self.choices
                else self.kind.click_type()
            )
            kw["multiple"] = self.kind.multiple
            if isinstance(user_default, list):
                user_default = ",".join(user_default)
            if self.required:
                kw["required"] = True
            elif user_default is not None and not self.kind.multiple:
                if isinstance(user_default, float) and user_default.is_integer():
                    user_default = int(user_default)  # shown as 5, read as 5.0
                kw.update(default=user_default, show_default=True)
            if self.metavar:
                kw["metavar"] = self.metavar
        return click.option(*decls, self.name, **kw)


UNIT_KINDS = ("h3", "zcta", "county")
#: The default band around the mean (a fraction; users type 5): ``tolerance`` of partition
#: and evaluate, and of the off-target explanations of export, diff and the map.
TOLERANCE = 0.05
#: How accounts are scored (``model``; :class:`patchmap.scoring.ScoringConfig` checks
#: a plan file's ``[scoring] model`` against the same names).
SCORING_MODELS = ("auto", "gbm", "logistic", "rules")

#: Every option, grouped by stage; see the module docstring to add one.
OPTIONS: tuple[Option, ...] = (
    # --- sample-accounts
    Option("region", TEXT, "CA", "State code(s), e.g. CA or RI,DE.", commands=("sample-accounts",)),
    Option("n", INT, 20_000, "Number of accounts.", commands=("sample-accounts",), low=1),
    Option("seed", INT, 7, "Seed of the synthetic accounts.", commands=("sample-accounts",), low=0),
    Option(
        "bad_share",
        NUMBER,
        0.0,
        "Share of rows given a realistic defect (to exercise rejects), 0-1.",
        commands=("sample-accounts",),
        low=0,
        high=1,
    ),
    # --- [accounts]: reading accounts (score, layers, export)
    Option(
        "path",
        FILE,
        None,
        "Accounts file (CSV, Parquet or Excel).",
        table="accounts",
        required=True,
    ),
    Option(
        "columns",
        COLUMN_MAP,
        None,
        "Map a column name: NAME=SOURCE, e.g. --column lat=Latitude (repeatable).",
        commands=("score", "layers", "export", "compare", "diff"),
        table="accounts",
        flag="--column",
        metavar="NAME=SOURCE",
    ),
    Option(
        "sheet",
        TEXT,
        None,
        "Excel accounts: read this sheet only (default: every sheet with data, when they "
        "all have the same columns).",
        commands=("score", "layers", "export", "compare", "diff"),
        table="accounts",
    ),
    Option(
        "encoding",
        TEXT,
        None,
        "Text encoding of CSV accounts, e.g. latin-1 or cp1252 (default: UTF-8).",
        commands=("score", "layers", "export", "compare", "diff"),
        table="accounts",
    ),
    Option(
        "named",
        FILE,
        None,
        "NAMED.csv: account_id,rep_id (or territory)[,segment]: accounts pinned to an "
        "owner, out of geographic routing.",
        commands=("layers", "export"),
        table="accounts",
    ),
    # --- scoring (score, layers, export, diff; a plan file's [scoring] table is
    # patchmap.scoring.ScoringConfig's fields)
    Option(
        "model",
        TEXT,
        None,
        "How accounts are scored: auto (the better cross-validated of gbm and logistic, "
        "learnt from won/lost history), gbm, logistic, or rules (documented points, no "
        "history needed). Default: auto.",
        commands=("score", "layers", "export", "diff"),
        choices=SCORING_MODELS,
    ),
    # --- [units]: layers
    Option(
        "units",
        TEXT,
        "zcta",
        "h3, zcta, county, or your own polygon file (with --unit-id).",
        commands=("layers",),
        table="units",
        key="kind",
        required=True,
    ),
    Option(
        "unit_id",
        TEXT,
        None,
        "Id column of your own polygon file.",
        commands=("layers",),
        table="units",
    ),
    Option(
        "resolution",
        INT,
        7,
        "H3 resolution (0-15).",
        commands=("layers",),
        table="units",
        low=0,
        high=15,
    ),
    Option(
        "region",
        NAMES,
        None,
        "State code(s); default: where the accounts are.",
        commands=("layers",),
        table="units",
    ),
    Option(
        "sums",
        NAMES,
        None,
        "Numeric account columns summed into the units besides the built-in measures "
        "(balance on them with --balance): revenue,workload.",
        commands=("layers",),
        table="units",
        flag="--sum",
        key="sum",
    ),
    Option(
        "engine",
        TEXT,
        "pandas",
        "dask: stream a (partitioned) Parquet dataset through a Dask cluster.",
        commands=("layers",),
        choices=("pandas", "dask"),
    ),
    Option(
        "scheduler",
        TEXT,
        None,
        "Dask scheduler ADDRESS (default: a LocalCluster sized to this machine).",
        commands=("layers",),
        requires=(("engine", "dask"),),
    ),
    # --- [partition]
    Option(
        "id_col",
        TEXT,
        "unit_id",
        "Unit id column.",
        commands=("partition", "evaluate", "map", "export", "compare", "diff"),
        flag="--id",
    ),
    Option(
        "balance",
        NAMES,
        ["potential", "accounts"],
        "Column(s) to balance, primary first: a,b.",
        commands=("partition", "evaluate"),
        table="partition",
        required=True,
    ),
    Option(
        "territories",
        COUNT_OR_AUTO,
        None,
        "Number of territories K (required unless --reps or --current gives it); auto: the "
        "headcount --capacity recommends (total over capacity per rep, rounded up).",
        commands=("partition",),
        table="partition",
        low=2,
    ),
    Option(
        "tolerance",
        NUMBER,
        TOLERANCE,
        "Allowed deviation from the mean (secondary measures; with --current every measure).",
        commands=("partition", "evaluate"),
        table="partition",
        unit="percent",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    ),
    Option(
        "seed",
        INT,
        0,
        "Seed for every random choice: the same seed gives the same plan.",
        commands=("partition",),
        table="partition",
        low=0,
    ),
    Option(
        "target",
        NUMBER,
        0.005,
        "Allowed deviation of the primary measure from the mean (as tight as the units allow).",
        commands=("partition",),
        table="partition",
        unit="percent",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    ),
    Option(
        "effort",
        NUMBER,
        1.0,
        "Length of the search after the restarts, in multiples of the default (0: none); "
        "the same seed and effort give the same plan.",
        commands=("partition", "demo"),
        table="partition",
        low=0,
        high=1000,
    ),
    Option(
        "time_limit",
        NUMBER,
        None,
        "Stop the search (starts, search and repair) after this long, wall clock; the "
        "first start always finishes (default: when its steps are done, the search after "
        "the starts capped at 7 s of CPU time up to 1,000 units, up to 40 s for large maps).",
        commands=("partition",),
        table="partition",
        low=0,
        low_open=True,
        unit="seconds",
    ),
    Option(
        "adjacency",
        FILE,
        None,
        "EDGES.csv (unit_a,unit_b, one row per undirected edge): this graph replaces the one "
        "built from the polygons (barriers, ferries, a published graph).",
        commands=("partition", "evaluate"),
        table="partition",
    ),
    Option(
        "bridge_factor",
        NUMBER,
        1.5,
        "Units that do not touch (islands) are joined by the shortest tree of links between "
        "the pieces, plus every other link at most this many times the longest tree link on "
        "the tree path between them: 0 keeps the tree alone, else a number >= 1 (also for the "
        "pieces of an --adjacency graph that falls apart); evaluate measures a plan on the "
        "graph this factor gives.",
        commands=("partition", "evaluate"),
        table="partition",
    ),
    Option(
        "prove",
        BOOL,
        False,
        "Certify the plan: solve an exact model (HiGHS, pip install 'patchmap[exact]') for a "
        "lower bound on the cut edges of any plan in the same bands, and report the gap "
        "(PLAN.bound.json), or prove that no plan can meet the bands.",
        commands=("partition",),
        table="partition",
        flag="--prove/--no-prove",
    ),
    Option(
        "prove_time_limit",
        NUMBER,
        60.0,
        "Most time the exact model of --prove may take.",
        commands=("partition",),
        table="partition",
        low=0,
        low_open=True,
        unit="seconds",
    ),
    Option(
        "reps",
        FILE,
        None,
        "REPS.csv: rep_id, lat/lon or zip[, capacity, segment]: one "
        "territory per rep, grown from the rep's home (writes PLAN.reps.csv).",
        commands=("partition",),
        table="partition",
    ),
    Option(
        "current",
        FILE,
        None,
        "CURRENT.csv (unit_id,territory): realign this plan, moving little (writes PLAN.moves.csv).",
        commands=("partition",),
        table="partition",
    ),
    Option(
        "current_accounts",
        FILE,
        None,
        "Last year's accounts (with current): new accounts are listed as new, gone ones as "
        "lost, and plan.moved_accounts.csv keeps only accounts that really moved.",
        table="partition",
        requires=("current",),
    ),
    Option(
        "max_moved",
        NUMBER,
        None,
        "With --current: move at most this share of the primary measure.",
        commands=("partition",),
        table="partition",
        unit="percent",
        low=0,
        high=1,
        requires=("current",),
    ),
    Option(
        "relax",
        TEXT,
        "tolerance",
        "What gives way when --max-moved and --tolerance cannot both hold.",
        commands=("partition",),
        table="partition",
        choices=("tolerance", "budget"),
    ),
    Option(
        "locked",
        FILE,
        None,
        "LOCKED.csv (unit_id,territory): units that stay where they are.",
        commands=("partition",),
        table="partition",
    ),
    Option(
        "within",
        TEXT,
        None,
        "Column (e.g. state) no territory may cross.",
        commands=("partition",),
        table="partition",
    ),
    Option(
        "regions",
        INT,
        None,
        "Two-level plan: N regions, territories nested in them (writes PLAN.regions.csv).",
        commands=("partition",),
        table="partition",
        low=2,
    ),
    Option(
        "quota",
        NUMBER,
        None,
        "Company target to split across territories by potential "
        "(partition: PLAN.quota.csv; export: summary.csv).",
        commands=("partition", "export"),
        table="partition",
        low=0,
        high=1e15,
    ),
    Option(
        "quota_floor",
        AMOUNT,
        None,
        "Smallest quota: an amount or a percent of the mean, e.g. 80%.",
        commands=("partition", "export"),
        table="partition",
        requires=("quota",),
    ),
    Option(
        "quota_cap",
        AMOUNT,
        None,
        "Largest quota: an amount or a percent of the mean, e.g. 150%.",
        commands=("partition", "export"),
        table="partition",
        requires=("quota",),
    ),
    Option(
        "named_mode",
        TEXT,
        "exclude",
        "Named accounts: exclude (the plan balances the other accounts) or balance "
        "(counted into their owner's balance; needs reps to name the owners).",
        commands=("export",),
        table="partition",
        choices=("exclude", "balance"),
    ),
    # --- [[segment]]: one table per segment; the keys of [partition] and [export] it
    # leaves out are taken from those tables (patchmap.segments)
    Option(
        "name",
        TEXT,
        None,
        "Segment name (its folder under segments/).",
        table="segment",
        required=True,
    ),  # fmt: skip
    Option(
        "where",
        TEXT,
        "true",
        'Rule choosing the segment\'s accounts, e.g. "employees >= 1000"; the first '
        "matching segment takes an account.",
        table="segment",
    ),
    Option(
        "overlay",
        BOOL,
        False,
        "A layer of its own on top of the others (a vertical team): its accounts stay in "
        "their other segment too.",
        table="segment",
    ),
    Option(
        "units",
        TEXT,
        None,
        "h3, zcta, county, or national (accounts dealt to territories without geography); "
        "default: [units] kind.",
        table="segment",
        choices=("h3", "zcta", "county", "national"),
    ),
    Option(
        "resolution",
        INT,
        None,
        "H3 resolution of the segment's units; default: [units] resolution.",
        table="segment",
        low=0,
        high=15,
    ),
    # --- [map]
    Option(
        "fmt",
        TEXT,
        "html",
        "html: a self-contained page; png or pdf: a static map.",
        commands=("map",),
        flag="--format",
        choices=("html", "png", "pdf"),
    ),
    Option("title", TEXT, None, "Title of the map.", commands=("map",), table="map"),
    Option(
        "tiles",
        BOOL,
        False,
        "Add an OpenStreetMap basemap (online). Off by default: the map opens offline.",
        commands=("map", "compare", "demo"),
        table="map",
        flag="--tiles/--no-tiles",
    ),
    Option("reps", FILE, None, "REPS.csv: show the reps' home markers.", commands=("map",)),
    # --- [export]
    Option("accounts", FILE, None, "Accounts file, for assignments.csv.", commands=("export",)),
    Option(
        "reps",
        FILE,
        None,
        "REPS.csv: rep per territory: a territory column (territory,rep_id[,rep_name,email]), "
        "territories labelled by rep_id, or the territory holding each home.",
        commands=("export",),
    ),
    Option(
        "formats",
        TEXT,
        "csv",
        "Also write CRM-shaped files: salesforce (Enterprise Territory Management metadata "
        "and Data Loader files in salesforce/), hubspot (a company-owner import in hubspot/) "
        "or all.",
        commands=("export",),
        table="export",
        key="format",
        flag="--format",
        choices=("csv", "salesforce", "hubspot", "all"),
    ),
    Option(
        "salesforce_model",
        TEXT,
        "Patchmap",
        "Name of the Salesforce territory model (--format salesforce).",
        commands=("export",),
        table="export",
    ),
    Option(
        "salesforce_territories",
        FILE,
        None,
        "An export of the deployed territories (Id, DeveloperName): fills Territory2Id in "
        "the Salesforce association files.",
        commands=("export",),
        table="export",
    ),
    Option(
        "tolerance",
        NUMBER,
        TOLERANCE,
        "A territory further than this from target is explained: why it stays off target "
        "(export: summary.md, diff: diff.md).",
        commands=("export", "diff"),
        unit="percent",
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    ),
    Option(
        "shared_territories",
        BOOL,
        False,
        "Allow a territory with several reps (joined by ';') or none; without it each "
        "territory needs exactly one rep.",
        commands=("export",),
    ),
    Option(
        "capacity",
        CAPACITY,
        None,
        "Accounts per rep (e.g. 150) or COLUMN=AMOUNT per rep "
        "(e.g. potential=2000000): recommended headcount in summary.csv (export), the "
        "number of territories with --territories auto (partition).",
        commands=("export", "partition"),
        table="export",
    ),
    # --- compare
    Option(
        "units_path",
        FILE,
        None,
        "Unit file: adds balance, compactness, cut edges, travel and the map.",
        commands=("compare",),
        flag="--units",
    ),
    Option(
        "balance", NAMES, None, "Measures to compare, primary first: a,b.", commands=("compare",)
    ),
    Option(
        "reps",
        FILE,
        None,
        "REPS.csv: travel from the reps' homes (each plan's territories linked to reps as "
        "export links them).",
        commands=("compare",),
    ),
    Option(
        "accounts",
        FILE,
        None,
        "Accounts file (with --units): mean and 90th-percentile travel to the accounts.",
        commands=("compare",),
        requires=("units_path",),
    ),
    # --- diff
    Option(
        "units_path",
        FILE,
        None,
        "Unit file both plans cover.",
        commands=("diff",),
        flag="--units",
        required=True,
    ),
    Option(
        "accounts",
        FILE,
        None,
        "This year's accounts: one row per account whose owner changes.",
        commands=("diff",),
    ),
    Option(
        "old_accounts",
        FILE,
        None,
        "Last year's accounts (default: --accounts): accounts only here are lost, only in "
        "--accounts new.",
        commands=("diff",),
        requires=("accounts",),
    ),
    Option(
        "reps",
        FILE,
        None,
        "REPS.csv of the new plan: owners are reps (a territory column, territories "
        "labelled by rep_id, or homes); without it owners are territories.",
        commands=("diff",),
    ),
    Option(
        "old_reps",
        FILE,
        None,
        "REPS.csv of the old plan (default: --reps).",
        commands=("diff",),
        requires=("reps",),
    ),
    Option(
        "balance",
        NAMES,
        None,
        "Measures judged for the off-target explanation, primary first: a,b.",
        commands=("diff",),
    ),
    # --- [output]
    Option("dir", FOLDER, "out", "Folder every output of `patchmap run` goes to.", table="output"),
)


#: Arrays of tables (``[[segment]]``, one per segment) and the keys of other tables each
#: also accepts (taking their values when it leaves them out), by table.
ARRAY_TABLES: dict[str, dict[str, tuple[str, ...]]] = {
    "segment": {
        "partition": (
            "balance", "territories", "tolerance", "seed", "target", "effort", "time_limit",
            "reps", "current", "max_moved", "relax", "locked", "within", "regions", "quota",
            "quota_floor", "quota_cap", "named_mode",
        ),
        "export": ("capacity",),
    }
}  # fmt: skip


def _index() -> tuple[dict[str, dict[str, Option]], dict[str, dict[str, Option]]]:
    by_command: dict[str, dict[str, Option]] = {}
    by_table: dict[str, dict[str, Option]] = {}
    for o in OPTIONS:
        for c in o.commands:
            if o.name in by_command.setdefault(c, {}):
                raise RuntimeError(f"option {o.name!r} declared twice for {c}")
            by_command[c][o.name] = o
        if o.table:
            if o.plan_key in by_table.setdefault(o.table, {}):
                raise RuntimeError(f"key {o.plan_key!r} declared twice in [{o.table}]")
            by_table[o.table][o.plan_key] = o
    for array, included in ARRAY_TABLES.items():
        own = by_table.setdefault(array, {})
        for table, keys in included.items():
            for key in keys:
                own.setdefault(key, by_table[table][key])
    return by_command, by_table


_BY_COMMAND, _BY_TABLE = _index()
#: The plain tables (``[name]``); arrays of tables are in :data:`ARRAY_TABLES`.
TABLES = tuple(t for t in _BY_TABLE if t not in ARRAY_TABLES)


def for_command(command: str) -> dict[str, Option]:
    """The options of a CLI command (and of its pipeline function), by library name."""
    return dict(_BY_COMMAND.get(command, {}))


def for_table(table: str) -> dict[str, Option]:
    """The keys a plan-file table accepts."""
    return dict(_BY_TABLE.get(table, {}))


def option(scope: str, name: str) -> Option:
    """An option by command or table and library name."""
    opts = _BY_COMMAND.get(scope) or {o.name: o for o in _BY_TABLE.get(scope, {}).values()}
    return opts[name]


def default(scope: str, name: str) -> Any:
    """The default (library units) of an option: the one place it is written."""
    return option(scope, name).default


def error(scope: str, template: str, **aliases: str) -> OptionError:
    """An :class:`OptionError` naming options of ``scope`` as ``{name}`` in ``template``.

    ``aliases`` map a library function's own keyword to the option it stands for (e.g.
    ``states="region"``: ``{states}`` reads ``states`` to library callers, ``--region`` on
    the command line, ``region`` in a plan file).
    """
    opts = _BY_COMMAND.get(scope) or {o.name: o for o in _BY_TABLE.get(scope, {}).values()}
    opts = dict(opts) | {alias: opts[name] for alias, name in aliases.items()}
    return OptionError(template, opts)


def _is_set(value: Any) -> bool:
    return value is not None and value is not False and value != ()


def check_rules(opts: Mapping[str, Option], values: Mapping[str, Any]) -> None:
    """Options that need others (``requires``): an :class:`OptionError` when one is missing."""
    for name, opt in opts.items():
        if not _is_set(values.get(name)):
            continue
        for need in opt.requires:
            other, wanted = need if isinstance(need, tuple) else (need, None)
            have = values.get(other)
            if wanted is None and not _is_set(have):
                raise OptionError(f"{{{name}}} needs {{{other}}}", opts)
            if wanted is not None and have != wanted:
                raise OptionError(f"{{{name}}} needs {{{other}={wanted}}}", opts)


def resolve(
    opts: Mapping[str, Option], given: Mapping[str, Any], audience: Audience, where: str = ""
) -> dict[str, Any]:
    """Every option of ``opts``: the given value checked (library units) or the default."""
    out: dict[str, Any] = {}
    for name, opt in opts.items():
        if name in given and given[name] is not None:
            out[name] = opt.check(given[name], audience, where)
        elif opt.required and opt.default is None:
            raise OptionError(f"{{{name}}} is required", opts)
        else:
            out[name] = opt.default
    check_rules(opts, out)
    return out


# --------------------------------------------------------------------------- generators


def click_options(command: str) -> Callable:
    """Decorator: every option of ``command`` as a click option, values passed on in
    library units (percent -> fraction), checked, rules between them enforced."""
    opts = for_command(command)

    def wrap(f: Callable) -> Callable:
        @functools.wraps(f)
        def run(**kwargs: Any) -> Any:
            given = {n: kwargs.pop(n) for n in opts}
            try:
                values = resolve(opts, given, CLI)
            except OptionError as exc:
                raise InputError(exc.worded(CLI)) from None
            return f(**kwargs, **values)

        for opt in reversed(list(opts.values())):
            run = opt.click_decorator()(run)
        return run

    return wrap


def takes(command: str) -> Callable:
    """Decorator for a pipeline function taking the options of ``command`` as keywords.

    The function declares ``**settings``; callers pass options by library name (library
    units). They are checked, defaults filled, and the function gets every one of them.
    ``help()`` and ``inspect.signature`` show each option with its default.
    """
    opts = for_command(command)

    def wrap(f: Callable) -> Callable:
        sig = inspect.signature(f)
        own = {n for n, p in sig.parameters.items() if p.kind is not p.VAR_KEYWORD}

        @functools.wraps(f)
        def call(*args: Any, **kwargs: Any) -> Any:
            unknown = sorted(set(kwargs) - own - set(opts))
            if unknown:
                raise TypeError(
                    f"{f.__name__}() got an unexpected keyword argument {unknown[0]!r}"
                    + did_you_mean(unknown[0], [*own, *opts])
                )
            given = {n: kwargs.pop(n) for n in list(kwargs) if n in opts}
            return f(*args, **kwargs, **resolve(opts, given, LIBRARY))

        params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        params += [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o.default)
            for n, o in opts.items()
            if n not in own
        ]
        call.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        call.__doc__ = (f.__doc__ or "") + _options_doc(opts)
        return call

    return wrap


def _options_doc(opts: Mapping[str, Option]) -> str:
    lines = ["", "", "Options (patchmap.options; library units):"]
    for n, o in opts.items():
        lines.append(f"    {n}: {o.help} Default {o.default!r}.")
    return "\n".join(lines)


def did_you_mean(word: str, known: Iterable[str]) -> str:
    known = list(known)
    close = [k for k in known if k.startswith(word) or word.startswith(k)]
    close = close or difflib.get_close_matches(word, known, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def read_table(
    table: str,
    values: Mapping[str, Any],
    *,
    source: str | os.PathLike,
    base: Path | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """A plan-file table checked against its declared keys, in library units.

    Unknown keys (with the nearest known key suggested), wrong types and out-of-range
    values raise :class:`InputError` naming the file, the table (``label``, default
    ``[table]``) and the key. Paths are taken relative to ``base`` (the plan file's
    folder), the defaults too.
    """
    schema = for_table(table)
    where = f"{source}: {label or f'[{table}]'} "
    if not isinstance(values, Mapping):
        raise InputError(f"{where}expected a table, got {values!r}")
    for key in values:
        if key not in schema:
            raise InputError(
                f"{where}unknown key {key!r}{did_you_mean(key, schema)} "
                f"(expected {', '.join(sorted(schema))})"
            )
    by_name = {o.name: o for o in schema.values()}
    given = {schema[k].name: v for k, v in values.items()}
    try:
        out = resolve(by_name, given, PLAN, where)
    except OptionError as exc:
        raise InputError(f"{where}{exc.worded(PLAN)}") from None
    if base is not None:
        for name, opt in by_name.items():
            if opt.kind.path and out[name] is not None:
                out[name] = base / out[name]
    return out
