"""Options declared once (patchmap.options): CLI, plan files and the library agree."""

from __future__ import annotations

import inspect
import json
import tempfile
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from patchmap import options
from patchmap.cli import main
from patchmap.config import SECTIONS, load_config, plan_config
from patchmap.errors import InputError
from patchmap.options import CLI, LIBRARY, OPTIONS, PLAN, option
from patchmap.partition import Partitioner
from patchmap.pipeline import partition_file


def test_every_declaration_is_whole():
    for opt in OPTIONS:
        assert opt.help.strip().endswith("."), opt.name
        assert opt.commands or opt.table, opt.name
        if opt.default is not None:  # a default passes its own check, in library units
            opt.check(opt.default, LIBRARY)


@pytest.mark.parametrize(
    "command", sorted({c for o in OPTIONS for c in o.commands}), ids=lambda c: c
)
def test_click_options_come_from_the_declarations(command):
    cmd = main.commands[command]
    flags = {f for p in cmd.params for f in p.opts}
    for opt in options.for_command(command).values():
        assert opt.cli_flag in flags, (command, opt.name)


def test_percent_is_converted_once():
    tol = option("partition", "tolerance")
    assert tol.check(5, CLI) == tol.check(5, PLAN) == tol.check(0.05, LIBRARY) == 0.05
    assert tol.default == 0.05
    # the library's default is the declaration's
    assert inspect.signature(Partitioner).parameters["tolerance"].default == tol.default
    assert inspect.signature(partition_file).parameters["tolerance"].default == tol.default
    tolerance_flag = next(p for p in main.commands["partition"].params if p.name == "tolerance")
    assert tolerance_flag.default == 5  # users see percent


@pytest.mark.parametrize(
    ("audience", "value", "message"),
    [
        (CLI, 0, "--tolerance: expected a percentage in (0, 100), got 0"),
        (PLAN, 100, "tolerance: expected a percentage in (0, 100), got 100"),
        (LIBRARY, 5, "tolerance: expected a fraction (0.05 = 5%) in (0, 1), got 5"),
        (LIBRARY, float("nan"), "tolerance: expected a fraction"),
        (PLAN, "5", "tolerance: expected a percentage in (0, 100), got str '5'"),
    ],
)
def test_one_validator_words_it_for_the_audience(audience, value, message):
    with pytest.raises(InputError) as err:
        option("partition", "tolerance").check(value, audience)
    assert str(err.value).startswith(message)


def test_library_errors_are_in_library_words(tmp_path):
    with pytest.raises(InputError) as err:
        partition_file(tmp_path / "u.parquet", tmp_path / "p.csv", max_moved=0.1)
    assert str(err.value) == "max_moved needs current"
    assert err.value.worded(CLI) == "--max-moved needs --current"
    with pytest.raises(TypeError, match="did you mean 'tolerance'"):
        partition_file(tmp_path / "u.parquet", tmp_path / "p.csv", tolerence=0.1)


def test_plan_config_checks_library_values(tmp_path):
    with pytest.raises(InputError, match=r"\[partition\] tolerance: expected a fraction"):
        plan_config({"accounts": {"path": tmp_path}, "partition": {"tolerance": 5}})
    cfg = plan_config({"accounts": {"path": tmp_path}, "partition": {"tolerance": 0.02}})
    assert cfg.partition["tolerance"] == 0.02 and cfg.partition["seed"] == 0


def test_help_shows_user_units():
    text = " ".join(CliRunner().invoke(main, ["partition", "--help"]).output.split())
    assert "In percent." in text and "[default: 5]" in text


_keys = st.sampled_from(sorted({o.plan_key for o in OPTIONS if o.table} | {"x", "seed_"}))
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")  # a TOML string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from([*SECTIONS, "maps"]), _keys, _values), min_size=1, max_size=5
    )
)
def test_plan_loader_fuzz_gives_a_config_or_an_input_error(tmp_path, entries):
    """Whatever a plan file holds, loading it gives a config or a one-line InputError."""
    (tmp_path / "a.csv").write_text("account_id,zip\n1,02903\n")
    tables: dict[str, dict[str, str]] = {"accounts": {"path": '"a.csv"'}}
    for table, key, value in entries:
        if value is not None:
            tables.setdefault(table, {})[key] = _toml_value(value)
    text = "\n".join(
        f"[{t}]\n" + "\n".join(f'"{k}" = {v}' for k, v in kv.items()) for t, kv in tables.items()
    )
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    path = tmp_path / "plan.toml"
    path.write_text(text)
    try:
        load_config(path)
    except InputError as exc:
        assert "\n" not in str(exc) and str(exc)


def test_a_missing_file_with_a_newline_in_its_name_is_a_one_line_error(tmp_path):
    """Found by the fuzz test above: ``adjacency = "\\n"`` printed the path as it is."""
    (tmp_path / "a.csv").write_text("account_id,zip\n1,02903\n")
    path = tmp_path / "plan.toml"
    path.write_text('[accounts]\npath = "a.csv"\n[partition]\nadjacency = "\\n"\n')
    with pytest.raises(InputError, match="adjacency: file not found") as exc:
        load_config(path)
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------- `patchmap run` on any plan file

_scalars = st.one_of(
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.text(max_size=4), max_size=3),
    st.sampled_from(["5", "5%", "CA", "zcta", "h3", "a.csv", "state", "budget", "accounts"]),
)
_table_keys = {t: sorted({o.plan_key for o in OPTIONS if o.table == t}) for t in SECTIONS}
_table_keys["accounts"] = sorted({*_table_keys["accounts"], "path", "columns"})


@st.composite
def _documents(draw) -> dict:
    """Mostly known tables with their own keys (so values reach the checks), some noise."""
    doc: dict = {}
    for _ in range(draw(st.integers(0, 4))):
        known = st.sampled_from(sorted(_table_keys))
        name = draw(st.one_of(*[known] * 7, st.text(max_size=5)))
        mine = st.sampled_from(_table_keys.get(name) or ["x"])
        table = st.dictionaries(
            st.one_of(*[mine] * 7, st.text(max_size=5)),
            st.one_of(_scalars, st.dictionaries(st.text(max_size=5), _scalars, max_size=2)),
            max_size=4,
        )
        doc[name] = draw(
            table | st.lists(table, min_size=1, max_size=2) if name == "segment" else table
        )
    if draw(st.integers(0, 9)) == 0:
        doc[draw(st.sampled_from(sorted(_table_keys)))] = draw(_scalars)  # a table that is not
    return doc


def _toml_document(doc: dict) -> str:
    """Top-level scalars first, then tables and arrays of tables, every key quoted."""

    def pairs(table: dict) -> str:
        return "".join(f"{_toml_value(k)} = {_toml_value(v)}\n" for k, v in table.items())

    tables = {k: v for k, v in doc.items() if isinstance(v, dict | list) and v}
    text = pairs({k: v for k, v in doc.items() if k not in tables})
    for name, value in tables.items():
        if isinstance(value, dict):
            text += f"[{_toml_value(name)}]\n" + pairs(value)
        elif all(isinstance(t, dict) for t in value):
            text += "".join(f"[[{_toml_value(name)}]]\n" + pairs(t) for t in value)
        else:
            text += f"{_toml_value(name)} = {_toml_value(value)}\n"
    return text


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        _documents(),
        _documents(),
        _documents(),
        st.binary(max_size=40),  # not TOML, not UTF-8
    ),
    st.booleans(),
)
def test_run_on_any_plan_file_is_exit_0_or_a_one_line_exit_2(monkeypatch, plan, base):
    """`patchmap run` on whatever a plan file holds (known and unknown tables and keys, values
    of any type, [[segment]] arrays, bytes that are no TOML): exit 0, or exit 2 with one line,
    never a traceback or an internal error (exit 1). The accounts file places no row, so a
    plan that loads ends at ingest (exit 2, rejects written) and the chain stays short."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        monkeypatch.chdir(folder)
        (folder / "a.csv").write_text("account_id,zip\n1,not-a-zip\n")
        path = folder / "plan.toml"
        if isinstance(plan, bytes):
            path.write_bytes(plan)
        else:  # fuzzed tables over a valid plan (or alone)
            doc = {"accounts": {"path": "a.csv"}, "output": {"dir": "out"}} if base else {}
            for name, table in plan.items():
                if isinstance(doc.get(name), dict) and isinstance(table, dict):
                    doc[name] = {**doc[name], **table}
                else:
                    doc[name] = table
            path.write_text(_toml_document(doc), encoding="utf-8")
        result = CliRunner().invoke(main, ["run", str(path)])
        monkeypatch.undo()
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    if result.exit_code == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and errors[0].strip() != "error:", result.stderr


def test_an_error_names_the_option_as_each_audience_does(tmp_path):
    """A library function's own keyword to library callers, the flag on the command line, the
    plan-file key in `patchmap run`; the error survives pickling (a Dask worker's error)."""
    import pickle

    from patchmap.accounts import validate_accounts

    with pytest.raises(options.OptionError) as err:
        validate_accounts(pd.DataFrame({"id": ["a"], "zip": ["02903"]}), "a.csv")
    for exc in (err.value, pickle.loads(pickle.dumps(err.value))):
        assert str(exc) == (
            "a.csv: missing required column 'account_id' (map one with column_map account_id=NAME)"
        )
        assert exc.worded(CLI).endswith("(map one with --column account_id=NAME)")
        assert exc.worded(PLAN).endswith("(map one with columns account_id=NAME)")
        assert exc.table == "accounts"

    pd.DataFrame({"id": ["a"], "zip": ["02903"]}).to_csv(tmp_path / "a.csv", index=False)
    r = run_cli("layers", tmp_path / "a.csv", "--units", "zcta", "--out", tmp_path / "u.parquet")
    assert r.returncode == 2 and "(map one with --column account_id=NAME)" in r.stderr
    (tmp_path / "plan.toml").write_text('[accounts]\npath = "a.csv"\n[output]\ndir = "out"\n')
    r = run_cli("run", tmp_path / "plan.toml")  # plan words need OptionError.table
    assert r.returncode == 2, r.stderr
    assert "plan.toml: [accounts] " in r.stderr and r.stderr.strip().endswith(
        "a.csv: missing required column 'account_id' (map one with columns account_id=NAME)"
    ), r.stderr
