"""Segments, named accounts and the user's own measures (issue 15).

The example plan (examples/segments.toml: a national enterprise book, a healthcare
overlay, commercial patches around reps, named accounts) runs once through the CLI; the
rules, the books and the named-accounts checks are tested on their own.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_cli
from patchmap.errors import InputError
from patchmap.segments import (
    AccountBalancer,
    Rule,
    RuleError,
    Segment,
    prepare_named,
    segment_accounts,
)

ACCOUNTS = pd.DataFrame(
    {
        "account_id": ["a", "b", "c", "d", "e"],
        "employees": [5, 2000, None, 300, 40],
        "industry": ["Healthcare", "Retail", None, " Healthcare", "Retail"],
        "annual_revenue": [1e9, 1.0, 2.0, 3.0, 4.0],
        "zip": ["02903", "19901", "", "x", "20001"],
    }
)


# ------------------------------------------------------------------------------------ rules


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("employees >= 1000 or annual_revenue >= 5e8", [1, 1, 0, 0, 0]),
        ("industry == 'Healthcare'", [1, 0, 0, 1, 0]),  # surrounding spaces ignored
        ("industry != 'Retail'", [1, 0, 0, 1, 0]),  # a missing value matches no comparison
        ("not industry == 'Retail'", [1, 0, 1, 1, 0]),
        ("industry in ('Retail', 'Healthcare') and employees < 1_000", [1, 0, 0, 1, 1]),
        ("100 <= employees < 5000", [0, 1, 0, 1, 0]),
        ("employees * 2 > 500 or -employees > -10", [1, 1, 0, 1, 0]),
        ("zip in ('02903', '20001')", [1, 0, 0, 0, 1]),
        ("true", [1, 1, 1, 1, 1]),
        ("employees not in (5, 40)", [0, 1, 0, 1, 0]),
    ],
)
def test_rules_evaluate_over_whole_columns(rule, expected):
    assert Rule.parse(rule).evaluate(ACCOUNTS).astype(int).tolist() == expected


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("__import__('os').system('echo pwned')", "function calls not allowed"),
        ("open('/etc/passwd')", "function calls not allowed"),
        ("employees.__class__", "attribute access"),
        ("().__class__.__bases__", "attribute access"),
        ("__builtins__ == 1", "name '__builtins__' not allowed"),
        ("industry[0] == 'H'", "subscripts"),
        ("(lambda: 1) == 1", "lambda not allowed"),
        ("[c for c in industry] == 1", "comprehensions not allowed"),
        ("f'{employees}' == '5'", "f-strings not allowed"),
        ("employees ** 99999999 > 1", "operator '**' not allowed"),
        ("employees is None", "comparison 'is' not allowed"),
        ("employees >", "syntax error"),
        ("employees in industry", "'in' needs a list of values"),
        ("", "empty rule"),
    ],
)
def test_rules_refuse_anything_but_comparisons(rule, message):
    with pytest.raises(RuleError, match=re.escape(message)):
        Rule.parse(rule).evaluate(ACCOUNTS)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("employes >= 1000", "unknown column 'employes' (did you mean 'employees'?)"),
        ("industry", "'industry' is text, not true/false"),
        ("employees > 'many'", "'many' is text, compared with a number"),
        ("zip > 5", "column 'zip' holds text (e.g. 'x'), compared with a number"),
    ],
)
def test_rules_name_the_column_that_does_not_fit(rule, message):
    with pytest.raises(RuleError, match=re.escape(message)):
        Rule.parse(rule).evaluate(ACCOUNTS)


def test_first_match_wins_and_overlays_are_layers_of_their_own():
    segs = [
        Segment("big", "employees >= 300"),
        Segment("health", "industry == 'Healthcare'", overlay=True),
        Segment("retail", "industry == 'Retail'"),
    ]
    s = segment_accounts(ACCOUNTS, segs)
    assert s.base.tolist() == [None, "big", None, "big", "retail"]
    assert s.mask("health").tolist() == [True, False, False, True, False]
    assert s.unmatched.tolist() == [True, False, True, False, False]
    assert s.counts() == {"big": 2, "health": 2, "retail": 1}
    assert "no segment 2 (rejected)" in s.tally()
    with pytest.raises(InputError, match=r"\[\[segment\]\] 'x' \(where = 'size > 1'\): unknown"):
        segment_accounts(ACCOUNTS, [Segment("x", "size > 1")])
    with pytest.raises(InputError, match="every segment is an overlay"):
        segment_accounts(ACCOUNTS, [Segment("h", "true", overlay=True)])
    with pytest.raises(InputError, match="repeats segment 'Big'"):
        segment_accounts(ACCOUNTS, [Segment("Big", "true"), Segment("big", "true")])


# ------------------------------------------------------------------------------------ books


def _book_accounts(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(n)],
            "potential": np.round(rng.lognormal(10, 1.2, n), 2),
            "revenue": np.round(rng.lognormal(15, 1.5, n)),
        }
    )


def test_books_balance_every_measure_without_geography():
    acc = _book_accounts()
    books = AccountBalancer(7, ["potential", "accounts"], tolerance=0.05).fit(acc)
    assert books.assignment.index.is_unique and len(books.assignment) == len(acc)
    totals = acc.groupby(books.assignment.to_numpy())["potential"].sum()
    assert len(totals) == 7
    assert (totals / totals.mean() - 1).abs().max() == pytest.approx(books.max_deviation)
    assert books.max_deviation < 0.005  # LPT + local search: far inside one account's share
    assert books.max_deviations["accounts"] <= 0.05 + 1e-9
    # the same seedless inputs give the same books
    again = AccountBalancer(7, ["potential", "accounts"], tolerance=0.05).fit(acc)
    assert again.assignment.equals(books.assignment)


def test_books_keep_pinned_accounts_with_their_owner_and_follow_capacity():
    acc = _book_accounts(200, seed=1)
    reps = pd.DataFrame({"rep_id": ["r1", "r2", "r3"], "capacity": [1.0, 1.0, 2.0]})
    big = acc.nlargest(3, "potential")["account_id"]
    pinned = pd.Series(["r1"] * 3, index=big.to_numpy())
    books = AccountBalancer(3, "potential").fit(acc, reps=reps, pinned=pinned)
    assert (books.assignment[big] == "r1").all()
    tot = acc.groupby(books.assignment.to_numpy())["potential"].sum()
    share = tot / tot.sum()
    assert share["r3"] == pytest.approx(0.5, abs=0.01)  # twice the capacity, twice the book
    assert books.max_deviation < 0.01
    with pytest.raises(InputError, match="not a territory"):
        AccountBalancer(3, "potential").fit(acc, reps=reps, pinned=pd.Series(["zz"], index=["A1"]))


# ------------------------------------------------------------------------------------ named


def _named(text: str):
    rows = [line.split(",") for line in text.strip().splitlines()]
    return prepare_named(pd.DataFrame(rows[1:], columns=rows[0]), source="named.csv")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("account_id,rep_id\na,r1\nb,r2\na,r1", "named.csv: lines 2, 4: duplicate"),
        ("account_id,rep_id\na,r1\nb,r2\na,r3", "lines 2, 4: conflict: named to different"),
        ("account_id,rep_id,territory\na,,\nb,r2,", r"line 2 \('a'\): no owner"),
        ("account_id,owner\na,r1", "no owner column: expected rep_id or territory"),
        ("rep_id\nr1", "column 'account_id' not found"),
    ],
)
def test_named_file_errors_name_the_lines(text, message):
    with pytest.raises(InputError, match=message):
        _named(text)


def test_named_owners_and_accounts_checked_with_lines():
    named = _named("account_id,rep_id,territory\na,r1,\nb,,T02\nc,r2,T09")
    with pytest.raises(InputError, match=r"line 4 \('c'\): conflict: rep 'r2' covers"):
        named.owners(named.table, rep_territory={"r1": "T01", "r2": "T02"}, territories=None)
    ok = _named("account_id,rep_id,territory\na,r1,\nb,,T02")
    owners = ok.owners(ok.table, rep_territory={"r1": "T01"}, territories=["T01", "T02"])
    assert owners.to_dict() == {"a": "T01", "b": "T02"}
    with pytest.raises(InputError, match=r"line 2 \('a'\): rep_id 'r1' is not a rep"):
        ok.owners(ok.table, rep_territory={"r9": "T01"}, territories=None)
    with pytest.raises(InputError, match=r"line 3 \('b'\): territory 'T02' is not a territory"):
        ok.owners(ok.table, rep_territory={"r1": "T01"}, territories=["T01"])
    with pytest.raises(InputError, match=r"lines 2, 3 \('a', 'b'\): account_id not among"):
        ok.check_accounts(["x", "y"])
    assert len(ok.check_accounts(["b"], rejected=["a"])) == 1  # rejected: dropped, warned


# ------------------------------------------------------------------------- the example plan


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """examples/segments.toml run through the CLI in a copy of examples/ (its output
    folder, ../out/segments, then lands in the temporary folder), once for every test of
    the example: with every CRM export (``[export] format = "all"``, the reps given an
    email) and no anytime search (``effort = 0``: these tests check the outputs' structure;
    how good the search's plans are is pinned by tests/test_golden.py)."""
    root = tmp_path_factory.mktemp("segments")
    shutil.copytree(REPO / "examples", root / "examples",
                    ignore=shutil.ignore_patterns("accounts_ca.csv"))  # fmt: skip
    ex = root / "examples"
    for name in ("reps_commercial.csv", "reps_enterprise.csv"):
        reps = pd.read_csv(ex / name, dtype=str)
        reps["email"] = [f"{r.lower()}@example.com" for r in reps["rep_id"]]
        reps.to_csv(ex / name, index=False)
    toml = (ex / "segments.toml").read_text()
    assert toml.count("[export]\n") == 1 and toml.count("seed = 0\n") == 1
    toml = toml.replace("[export]\n", '[export]\nformat = "all"\n')
    (ex / "segments.toml").write_text(toml.replace("seed = 0\n", "seed = 0\neffort = 0\n"))
    r = run_cli("run", ex / "segments.toml")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "search: best" not in r.stderr  # [partition] effort = 0 reached every segment
    return r, root / "out" / "segments"


def _tally(stdout: str) -> tuple[int, int, int]:
    line = next(x for x in stdout.splitlines() if " read, " in x)
    n = [int(w.rstrip(",").replace(",", "")) for w in line.split()[:6:2]]
    return n[0], n[1], n[2]


def test_example_accounts_add_up_per_segment(example_run):
    r, out = example_run
    n_read, n_placed, n_rejected = _tally(r.stdout)
    per_segment = pd.read_csv(out / "segments.csv")
    base = per_segment[per_segment["layer"] == "base"]
    # read = sum of the base layer's segments + rejected (ingest, no segment, outside units)
    assert n_read == 3000 == int(base["accounts"].sum()) + n_rejected
    assert n_placed == int(base["accounts"].sum())
    rejects = pd.read_csv(out / "rejects.csv", dtype=str, keep_default_na=False)
    base_rejects = rejects[rejects["segment"].isin(["", *base["segment"]])]
    assert len(base_rejects) == n_rejected and base_rejects["account_id"].is_unique
    a = pd.read_csv(out / "assignments.csv", dtype=str)
    for layer, rows in a.groupby("layer"):  # no account is routed twice within a layer
        assert rows["account_id"].is_unique, layer
        assert rows["territory"].notna().all(), layer
    counted = a.groupby("segment").size()
    assert counted.to_dict() == per_segment.set_index("segment")["accounts"].to_dict()
    base_ids = set(a.loc[a["layer"] == "base", "account_id"])
    assert not base_ids & set(base_rejects["account_id"])
    healthcare = a[a["segment"] == "healthcare"]
    assert set(healthcare["account_id"]) <= base_ids  # an overlay: also in a base segment
    summary = pd.read_csv(out / "summary.csv")
    assert summary.groupby("segment")["accounts"].sum().to_dict() == counted.to_dict()
    assert summary.groupby("segment").size().to_dict() == {
        "enterprise": 3, "healthcare": 2, "commercial": 6,
    }  # fmt: skip
    assert summary.loc[summary["segment"] == "commercial", "quota"].sum() == pytest.approx(3e7)
    assert {"potential", "reach", "quota", "recommended_reps"} <= set(per_segment.columns)


def test_example_routes_every_zip_once_per_geographic_segment(example_run):
    _, out = example_run
    z = pd.read_csv(out / "zip_to_rep.csv", dtype=str)
    assert set(z["segment"]) == {"healthcare", "commercial"}  # enterprise has no geography
    assert not z.duplicated(["zip", "segment"]).any() and z["territory"].notna().all()
    zips = {s: set(rows["zip"]) for s, rows in z.groupby("segment")}
    assert zips["healthcare"] == zips["commercial"] and len(zips["commercial"]) > 400
    com = z[z["segment"] == "commercial"]
    assert set(com["rep_id"]) == {f"C{i}" for i in range(1, 7)}  # territories are the reps'
    for seg in ("healthcare", "commercial"):
        plan = pd.read_csv(out / "segments" / seg / "plan.csv", dtype=str)
        assert list(plan.columns) == ["unit_id", "territory"] and plan["unit_id"].is_unique
    books = pd.read_csv(out / "segments" / "enterprise" / "books.csv", dtype=str)
    assert set(books["territory"]) == {"E1", "E2", "E3"}


def test_example_routes_named_accounts_to_their_owners(example_run):
    _, out = example_run
    named = pd.read_csv(REPO / "examples" / "named.csv", dtype=str)
    a = pd.read_csv(out / "assignments.csv", dtype=str)
    got = a[a["named"] == "True"].set_index("account_id")
    assert got["rep_id"].sort_index().to_dict() == named.set_index("account_id")["rep_id"].to_dict()
    assert (a.loc[a["named"] == "True", "layer"] == "base").all()
    summary = pd.read_csv(out / "summary.csv")
    owned = summary.set_index("territory")["named_accounts"]
    assert owned[named["rep_id"]].eq(1).all() and summary["named_accounts"].sum() == len(named)


def test_example_map_has_a_layer_and_legend_per_segment(example_run):
    _, out = example_run
    page = (out / "map.html").read_text(encoding="utf-8")
    for layer in ("enterprise (3 territories, national)", "healthcare (2 territories, zcta",
                  "commercial (6 territories, zcta"):  # fmt: skip
        assert layer in page
    assert "Ana Reyes" in page and "Dev Patel" in page  # legends name the reps
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert md.count("\n## ") == 3


# ------------------------------------------------------------------------- plan-file errors


def _cli(capsys, *args) -> tuple[int, str]:
    """The CLI in this process (as `patchmap ARGS`, without a subprocess's start-up):
    exit status and stderr."""
    from patchmap.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in args])
    return stop.value.code, capsys.readouterr().err


def _plan(tmp_path: Path, segments: str, accounts: Path) -> Path:
    p = tmp_path / "plan.toml"
    p.write_text(
        f'[accounts]\npath = "{accounts.as_posix()}"\n[units]\nregion = ["RI", "DE", "DC"]\n'
        f'[partition]\nterritories = 3\n{segments}\n[output]\ndir = "out"\n'
    )
    return p


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ('[[segment]]\nname = "big"\nwhere = "employees >="',
         "[[segment]] 'big' (where = 'employees >='): syntax error"),
        ("[[segment]]\nname = \"evil\"\nwhere = \"__import__('os').system('touch x')\"",
         "[[segment]] 'evil' (where = \"__import__('os').system('touch x')\"): function calls"),
        ('[[segment]]\nname = "big"\nwhere = "employes > 5"',
         "[[segment]] 'big' (where = 'employes > 5'): unknown column 'employes' (did you mean"),
        ('[[segment]]\nname = "big"\nwher = "true"', "[[segment]] 'big' unknown key 'wher'"),
        ('[[segment]]\nwhere = "true"', "[[segment]] #1 name is required"),
        ('[[segment]]\nname = "a"\nunits = "national"\nwithin = "state"',
         "units = national (no geography) takes no within"),
        ('[[segment]]\nname = "a"\nunits = "hex"', "units: expected one of h3, zcta, county"),
        ('[[segment]]\nname = "a"\noverlay = true', "every segment is an overlay"),
    ],
)  # fmt: skip
def test_plan_file_segment_errors_exit_2_naming_the_segment(
    tmp_path, capsys, ri_accounts_csv, segments, message
):
    code, err = _cli(capsys, "run", _plan(tmp_path, segments, ri_accounts_csv))
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()  # the evil rule ran nothing


def test_segments_take_the_search_settings_of_partition(tmp_path, ri_accounts_csv):
    """[partition] target, effort and time_limit reach each segment that leaves them out
    (in library units: target as a fraction), and a segment's own value wins."""
    from patchmap.config import load_config
    from patchmap.segments.segment import segments_from_tables

    p = _plan(
        tmp_path,
        '[[segment]]\nname = "a"\nwhere = "employees >= 50"\n'
        '[[segment]]\nname = "b"\neffort = 0.5\ntarget = 3\ntime_limit = 9',
        ri_accounts_csv,
    )
    p.write_text(
        p.read_text().replace("territories = 3\n", "territories = 3\neffort = 0\ntarget = 2\n")
    )
    a, b = segments_from_tables(load_config(p).segments)
    assert (a.partition["effort"], a.partition["target"], a.partition["time_limit"]) == (
        0, pytest.approx(0.02), None,
    )  # fmt: skip
    assert (b.partition["effort"], b.partition["target"], b.partition["time_limit"]) == (
        0.5, pytest.approx(0.03), 9,
    )  # fmt: skip


def test_named_accounts_unknown_ids_exit_2_with_lines(tmp_path, capsys, ri_accounts_csv):
    named = tmp_path / "named.csv"
    named.write_text("account_id,territory\nA0000001,T01\nNOPE,T02\n")
    p = _plan(tmp_path, '[[segment]]\nname = "all"', ri_accounts_csv)
    p.write_text(p.read_text().replace("[units]", f'named = "{named.as_posix()}"\n[units]'))
    code, err = _cli(capsys, "run", p)
    assert code == 2 and "named.csv: line 3 ('NOPE'): account_id not among the accounts" in err


# ------------------------------------------------------------------------ your own measures


def test_layers_sum_a_users_column_and_partition_balances_it(tmp_path, capsys, ri_accounts_csv):
    from patchmap.accounts import load_accounts
    from patchmap.layers import build_layers
    from patchmap.partition import Partitioner

    ingest = load_accounts(ri_accounts_csv)
    acc = ingest.accounts.assign(workload=ingest.accounts["employees"] * 0.5)
    layers = build_layers(acc, units="zcta", sums=["annual_revenue", "workload"])
    placed = layers.placed
    assert layers.units["workload"].sum() == pytest.approx(placed["workload"].sum())
    assert layers.units["annual_revenue"].sum() == pytest.approx(placed["annual_revenue"].sum())
    plan = Partitioner(4, ["workload", "accounts"], seed=0, effort=0).fit(layers.units)
    assert plan.max_deviation < 0.01 and plan.contiguous

    given = tmp_path / "scored.parquet"  # already scored: the CLI trains no model
    acc.assign(score=50.0, potential=acc["annual_revenue"] / 1e3).drop(
        columns=["source_row", "zcta", "location_source"]).to_parquet(given)  # fmt: skip
    out = tmp_path / "units.parquet"
    code, err = _cli(capsys, "layers", given, "--units", "zcta", "--sum", "workload",
                     "--out", out)  # fmt: skip
    assert code == 0, err
    code, err = _cli(capsys, "partition", out, "--balance", "workload", "--territories", "3",
                     "--effort", "0", "--out", tmp_path / "plan.csv")  # fmt: skip
    assert code == 0, err
    for bad, message in (
        ("revenue", "--sum: column 'revenue' not found in the accounts (did you mean"),
        ("industry", "--sum: column 'industry' must be numeric (row "),
        ("potential", "--sum: 'potential' is a built-in unit column"),
    ):
        code, err = _cli(capsys, "layers", ri_accounts_csv, "--units", "zcta", "--sum", bad,
                         "--out", tmp_path / "x.parquet")  # fmt: skip
        assert code == 2 and message in err, err


# ---------------------------------------------------------------------- named, no segments


def test_national_segments_pin_named_accounts_and_reject_the_unmatched():
    """Books need no geography (no unit layer is built); an account no rule takes is a
    reject; a pin naming a segment the account is not in is a conflict naming the line."""
    from patchmap.segments.plan import plan_segments

    rng = np.random.default_rng(4)
    acc = pd.DataFrame({
        "account_id": [f"A{i}" for i in range(300)],
        "employees": rng.integers(1, 3000, 300),
        "potential": np.round(rng.lognormal(9, 1, 300), 2),
        "source_row": np.arange(2, 302),
    })  # fmt: skip
    segs = [
        Segment("ent", "employees >= 1000", units="national", partition={"territories": 3}),
        Segment("mid", "100 <= employees < 1000", units="national",
                partition={"territories": 4, "balance": ["potential"]}),
    ]  # fmt: skip
    big = acc.loc[acc["employees"] >= 1000, "account_id"].iloc[:2].tolist()
    named = _named(f"account_id,territory\n{big[0]},T02\n{big[1]},T02")
    sp = plan_segments(acc, segs, named=named)
    ent = sp.plans["ent"].assignment()
    assert ent.set_index("account_id").loc[big, "territory"].eq("T02").all()
    assert ent.set_index("account_id").loc[big, "named"].all()
    n_small = int((acc["employees"] < 100).sum())
    assert (sp.rejects["reason"] == "matches no segment rule").sum() == n_small > 0
    assert sum(len(p.assignment()) for p in sp.plans.values()) + len(sp.rejects) == len(acc)
    small = acc.loc[acc["employees"] < 100, "account_id"].iloc[0]
    wrong = _named(f"account_id,territory,segment\n{big[0]},T01,ent\n{small},T01,mid")
    with pytest.raises(InputError, match=rf"line 3 \('{small}'\): conflict: account"):
        plan_segments(acc, segs, named=wrong)


def test_plan_without_segments_routes_named_accounts_counted_in_balance(tmp_path, capsys):
    """An ordinary plan file with named accounts counted into their owners' balance: the
    engine leaves each owner less of the map, the totals with the named book balance."""
    ex = REPO / "examples"
    named = tmp_path / "named.csv"
    named.write_text("account_id,rep_id\nA0001558,C1\nA0000237,C1\nA0001220,C4\n")
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f'[accounts]\npath = "{(ex / "accounts_east.csv").as_posix()}"\n'
        f'named = "{named.as_posix()}"\n[scoring]\nmodel = "rules"\n'
        '[units]\nregion = ["RI", "DE", "DC"]\n'
        f'[partition]\nreps = "{(ex / "reps_commercial.csv").as_posix()}"\n'
        'balance = ["potential"]\nnamed_mode = "balance"\neffort = 0\n[output]\ndir = "out"\n'
    )
    code, err = _cli(capsys, "run", plan)
    assert code == 0, err
    a = pd.read_csv(tmp_path / "out" / "assignments.csv", dtype=str)
    assert a["account_id"].is_unique
    got = a[a["named"] == "True"].set_index("account_id")["rep_id"].sort_index()
    assert got.to_dict() == {"A0000237": "C1", "A0001220": "C4", "A0001558": "C1"}
    s = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("territory")
    assert s.loc["C1", "named_accounts"] == 2 and s["named_accounts"].sum() == 3
    assert s["potential_deviation"].abs().max() < 0.02  # the totals, named book included
    units = pd.read_parquet(tmp_path / "out" / "units.parquet")
    assert units["accounts"].sum() + 3 == len(a)  # held out of the units


@pytest.fixture(scope="module")
def scored_east(tmp_path_factory) -> Path:
    """examples/accounts_east.csv scored once, by the rules (layers and export then train no
    model; the named-account tests do not test the model)."""
    out = tmp_path_factory.mktemp("scored") / "scored_east.csv"
    r = run_cli("score", REPO / "examples" / "accounts_east.csv", "--model", "rules", "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_cli_layers_and_export_with_named_accounts(tmp_path, capsys, scored_east):
    accounts = scored_east
    named = tmp_path / "named.csv"
    named.write_text("account_id,territory\nA0001558,T01\nA0001220,T02\n")
    units, plan, out = tmp_path / "u.parquet", tmp_path / "plan.csv", tmp_path / "exports"
    code, err = _cli(capsys, "layers", accounts, "--units", "zcta", "--named",
                     named, "--out", units)  # fmt: skip
    assert code == 0, err
    code, err = _cli(capsys, "partition", units, "--balance", "potential", "--territories", "3",
                     "--effort", "0", "--out", plan)  # fmt: skip
    assert code == 0, err
    code, err = _cli(capsys, "export", units, plan, "--accounts", accounts,
                     "--named", named, "--out", out)  # fmt: skip
    assert code == 0, err
    a = pd.read_csv(out / "assignments.csv", dtype=str)
    assert a["account_id"].is_unique and (a["named"] == "True").sum() == 2
    assert a.set_index("account_id").loc["A0001220", "territory"] == "T02"
    s = pd.read_csv(out / "summary.csv").set_index("territory")
    assert s["named_accounts"].to_dict() == {"T01": 1, "T02": 1, "T03": 0}
    bad = tmp_path / "bad.csv"
    bad.write_text("account_id,territory\nA0001558,T09\n")
    code, err = _cli(capsys, "export", units, plan, "--accounts", accounts,
                     "--named", bad, "--out", tmp_path / "x")  # fmt: skip
    assert code == 2 and "bad.csv: line 2 ('A0001558'): territory 'T09' is not a territory" in err


def test_example_crm_exports_carry_the_segment(example_run):
    """[export] format = "all" on the example: Salesforce gets a territory type and a parent
    territory per segment (children named apart, rules on ZIP and segment), HubSpot the
    base segment's owner and an overlay file; every assignment row is associated."""
    _, out = example_run
    sf = out / "salesforce"
    types = sorted(p.stem for p in (sf / "territory2Types").glob("*.territory2Type"))
    assert types == ["Patchmap_commercial", "Patchmap_enterprise", "Patchmap_healthcare"]
    summary = pd.read_csv(out / "summary.csv", dtype=str)
    folder = sf / "territory2Models" / "Patchmap" / "territories"
    files = {p.stem: p.read_text() for p in folder.glob("*.territory2")}
    assert len(files) == len(summary) + 3  # one parent per segment
    for _, row in summary.iterrows():
        seg, terr = row["segment"], row["territory"]
        xml = files[re.sub(r"[^A-Za-z0-9]+", "_", f"{seg}_{terr}")]
        assert f"<parentTerritory>{seg}_segment</parentTerritory>" in xml
        assert f"<territory2Type>Patchmap_{seg}</territory2Type>" in xml
        assert ("<ruleName>" in xml) == (seg != "enterprise")  # national: no ZIP rules
    rule = next((sf / "territory2Models" / "Patchmap" / "rules").glob("commercial_*"))
    text = rule.read_text()
    assert "<field>Account.Segment__c</field>" in text and "<value>commercial</value>" in text
    n = text.count("<ruleItems>")
    assert re.search(rf"<booleanFilter>\(1( OR \d+)*\) AND {n}</booleanFilter>", text)
    assigned = pd.read_csv(out / "assignments.csv", dtype=str)
    assoc = pd.read_csv(sf / "ObjectTerritory2Association.csv", dtype=str)
    assert len(assoc) == len(assigned)
    assert set(assoc["Territory2DeveloperName"]) <= set(files)
    assert assoc.groupby("Segment").size().to_dict() == assigned.groupby("segment").size().to_dict()
    package = (sf / "package.xml").read_text()
    assert all(f"<members>Patchmap.{d}</members>" in package for d in files)
    hub = pd.read_csv(out / "hubspot" / "companies.csv", dtype=str)
    base = assigned[assigned["segment"] != "healthcare"]
    assert hub["Record ID"].is_unique
    seg_of = base.set_index("account_id")["segment"]
    assert (hub["Sales segment"].to_numpy() == seg_of.reindex(hub["Record ID"]).to_numpy()).all()
    owner = base.set_index("account_id")["rep_email"].reindex(hub["Record ID"])
    assert (hub["Company owner"].to_numpy() == owner.to_numpy()).all()
    rejects = pd.read_csv(out / "hubspot" / "companies.rejects.csv", dtype=str)
    # the healthcare overlay has no reps: its accounts cannot get an overlay owner
    assert set(rejects["segment"]) == {"healthcare"}
    assert len(hub) == len(base)
