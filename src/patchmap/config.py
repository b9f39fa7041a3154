"""Plan files: one TOML file that describes a whole run, validated before anything runs.

Every table is checked against one schema, the option declarations of
:mod:`patchmap.options` (``[scoring]``: the fields of :class:`patchmap.scoring.ScoringConfig`):
an unknown key, a wrong type or an out-of-range value is a one-line error naming the file,
the table and the key. Values are kept in library units (a ``tolerance = 5`` percent is
0.05), paths relative to the plan file's folder.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchmap.errors import InputError
from patchmap.options import (
    ARRAY_TABLES,
    FILE,
    LIBRARY,
    PLAN,
    TABLES,
    UNIT_KINDS,
    OptionError,
    did_you_mean,
    read_table,
    resolve,
)
from patchmap.options import for_table as _for_table
from patchmap.scoring import ScoringConfig, scoring_config

SECTIONS = (*TABLES, *ARRAY_TABLES, "scoring")


@dataclass
class PlanConfig:
    """Everything `patchmap run` needs: each table's settings by library name, in library
    units, defaults filled and paths resolved (see :func:`load_config`, :func:`plan_config`).

    Tables read as attributes: ``config.partition["tolerance"]``.
    """

    tables: dict[str, dict[str, Any]]
    scoring: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None  # the plan file, for messages
    #: ``[[segment]]`` tables, checked, each complete: the [partition] and [export] keys
    #: a segment leaves out are those tables' values (see :mod:`patchmap.segments`)
    segments: list[dict[str, Any]] = field(default_factory=list)

    def __getattr__(self, table: str) -> dict[str, Any]:
        try:
            return self.__dict__["tables"][table]
        except KeyError:
            raise AttributeError(table) from None

    @property
    def out(self) -> Path:
        return Path(self.output["dir"])

    def worded(self, exc: OptionError) -> str:
        """An option error raised while running, in this plan file's words."""
        table = f" [{exc.table}]" if exc.table else ""
        return f"{self.source or 'plan'}:{table} {exc.worded(PLAN)}"

    def input_files(self) -> list[tuple[str, str, Path]]:
        """``(table, key, path)`` of every input file the plan names."""
        out = []
        for table in TABLES:
            for key, opt in _for_table(table).items():
                value = self.tables[table][opt.name]
                if opt.kind is FILE and value is not None:
                    out.append((table, key, Path(value)))
        if self.units["units"] not in UNIT_KINDS:
            out.append(("units", "kind", Path(self.units["units"])))
        for seg in self.segments:
            for key, opt in _for_table("segment").items():
                if opt.kind is FILE and seg[opt.name] is not None:
                    out.append((f"[segment] {seg['name']!r}", key, Path(seg[opt.name])))
        return out


def plan_config(tables: Mapping[str, Mapping[str, Any]] | None = None, **kw: Any) -> PlanConfig:
    """A :class:`PlanConfig` from library values (option names, fractions), checked the same
    way a plan file is: e.g. ``plan_config({"accounts": {"path": p}, "partition":
    {"territories": 20}, "output": {"dir": out}})``."""
    tables = dict(tables or {})
    values = {}
    for table in TABLES:
        opts = {o.name: o for o in _for_table(table).values()}
        given = dict(tables.get(table, {}))
        unknown = sorted(set(given) - set(opts))
        if unknown:
            raise InputError(f"[{table}]: unknown option {unknown[0]!r}")
        try:
            values[table] = resolve(opts, given, LIBRARY, f"[{table}] ")
        except OptionError as exc:
            raise InputError(f"[{table}] {exc}") from None
    _check_units(values["units"], "[units]")
    segments = []
    opts = {o.name: o for o in _for_table("segment").values()}
    for i, seg in enumerate(tables.get("segment", []) or [], start=1):
        given = dict(seg)
        unknown = sorted(set(given) - set(opts))
        if unknown:
            raise InputError(f"[[segment]] #{i}: unknown option {unknown[0]!r}")
        merged = {**_inherited(values), **given}
        try:
            segments.append(resolve(opts, merged, LIBRARY, f"[[segment]] #{i} "))
        except OptionError as exc:
            raise InputError(f"[[segment]] #{i} {exc}") from None
    config = PlanConfig(values, scoring=dict(tables.get("scoring", {})), segments=segments, **kw)
    _check_scoring(config.scoring, "[scoring]")
    return config


def _inherited(values: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What a ``[[segment]]`` table takes from the tables it includes, by option name."""
    out: dict[str, Any] = {}
    for table, keys in ARRAY_TABLES["segment"].items():
        for key in keys:
            name = _for_table(table)[key].name
            if values[table].get(name) is not None:
                out[name] = values[table][name]
    return out


def load_config(path: str | os.PathLike) -> PlanConfig:
    """Read and validate a plan TOML file (see examples/plan.toml), every table, and check
    that the files it names exist, before anything runs."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not valid TOML ({exc})") from None
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise InputError(
            f"{p}: unknown section [{unknown[0]}]{did_you_mean(unknown[0], SECTIONS)} "
            f"(expected {', '.join(sorted(SECTIONS))})"
        )
    base = p.resolve().parent
    values = {t: read_table(t, raw.get(t, {}), source=p, base=base) for t in TABLES}
    _check_units(values["units"], f"{p}: [units]", base)
    segments = _read_segments(raw, p, base)
    _check_scoring(raw.get("scoring", {}), f"{p}: [scoring]")
    config = PlanConfig(values, scoring=dict(raw.get("scoring", {})), source=p, segments=segments)
    for table, key, file in config.input_files():
        if not file.is_file():
            shown = str(file) if str(file).isprintable() else repr(str(file))  # one line
            raise InputError(f"{p}: [{table}] {key}: file not found: {shown}")
    return config


def _read_segments(raw: Mapping[str, Any], p: Path, base: Path) -> list[dict[str, Any]]:
    """Each ``[[segment]]`` table checked with the raw keys of [partition] and [export] it
    leaves out (so rules between keys, e.g. quota_floor needs quota, see both)."""
    tables = raw.get("segment", [])
    if not isinstance(tables, list) or not all(isinstance(t, Mapping) for t in tables):
        raise InputError(f"{p}: segment: expected [[segment]] tables (an array of tables)")
    inherited = {
        key: raw[table][key]
        for table, keys in ARRAY_TABLES["segment"].items()
        for key in keys
        if isinstance(raw.get(table), Mapping) and key in raw[table]
    }
    out = []
    for i, table in enumerate(tables, start=1):
        name = table.get("name")
        label = f"[[segment]] {name!r}" if isinstance(name, str) else f"[[segment]] #{i}"
        out.append(read_table("segment", {**inherited, **table}, source=p, base=base, label=label))
    return out


def _check_units(units: dict[str, Any], where: str, base: Path | None = None) -> None:
    """``kind``: a unit kind, or the user's own polygon file (with ``unit_id``)."""
    kind = units["units"]
    if kind in UNIT_KINDS:
        return
    if not units["unit_id"]:
        raise InputError(
            f"{where} kind: expected one of {', '.join(UNIT_KINDS)} (or a polygon file with "
            f"unit_id), got {str(kind)!r}"
        )
    units["units"] = base / kind if base is not None else Path(kind)


def _check_scoring(table: Mapping[str, Any], where: str) -> None:
    """``[scoring]`` against the fields (and their types) of ScoringConfig / RulesWeights."""
    _check_fields(ScoringConfig, table, where)
    try:
        scoring_config(table)
    except InputError as exc:
        msg = str(exc).removeprefix("[scoring]: ").removeprefix("scoring: ")
        raise InputError(f"{where} {msg}") from None


def _check_fields(cls: type, table: Any, where: str) -> None:
    if not isinstance(table, Mapping):
        raise InputError(f"{where}: expected a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in table.items():
        if key not in hints:
            raise InputError(
                f"{where} unknown key {key!r}{did_you_mean(key, names)} "
                f"(expected {', '.join(names)})"
            )
        if dataclasses.is_dataclass(hints[key]):
            _check_fields(hints[key], value, f"{where}.{key}")
        elif not _matches(value, hints[key]):
            hint = hints[key]
            shown = hint.__name__ if isinstance(hint, type) else str(hint)
            shown = shown.replace("collections.abc.", "").replace("typing.", "")
            raise InputError(
                f"{where} {key}: expected {shown}, got {type(value).__name__} {value!r}"
            )


def _matches(value: Any, hint: Any) -> bool:
    """Whether a TOML value fits a type hint (unions, sequences, mappings, tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(
            _matches(v, a) for v, a in zip(value, args, strict=True)
        )
    if origin in (list, Sequence):
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value)
    if origin in (dict, Mapping):
        return isinstance(value, Mapping) and all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()
        )
    return isinstance(value, hint) if isinstance(hint, type) else True
