"""Options declared once (patchmap.options): CLI, plan files and the library agree."""

from __future__ import annotations

import inspect
import tomllib

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
        return '"' + v.encode("unicode_escape").decode().replace('"', '\\"') + '"'
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
