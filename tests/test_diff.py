"""`patchmap diff` on a hand-made realignment: exact owner changes, new and lost accounts,
totals per rep, and why a territory stays off target."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import run_cli

# Rhode Island counties: 44001 Bristol, 44003 Kent, 44005 Newport, 44007 Providence,
# 44009 Washington. Kent moves from West to East, and West changes hands from r2 to r3.
OLD = {"44001": "East", "44005": "East", "44003": "West", "44007": "West", "44009": "West"}
NEW = {"44001": "East", "44005": "East", "44003": "East", "44007": "West", "44009": "West"}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from patchmap.io import write_units
    from patchmap.units.county import county_units

    d = tmp_path_factory.mktemp("diff")
    write_units(county_units(["RI"]), d / "units.parquet")
    for name, plan in (("old", OLD), ("new", NEW)):
        pd.DataFrame({"unit_id": list(plan), "territory": list(plan.values())}).to_csv(
            d / f"{name}.csv", index=False
        )
    pd.DataFrame({"territory": ["East", "West"], "rep_id": ["r1", "r2"]}).to_csv(
        d / "old_reps.csv", index=False
    )
    pd.DataFrame({"territory": ["East", "West"], "rep_id": ["r1", "r3"]}).to_csv(
        d / "reps.csv", index=False
    )
    cols = ["account_id", "name", "zip", "potential"]
    last_year = [
        ("a1", "Newport Marine", "02840", 1000),  # Newport: East, r1 both years
        ("a2", "Warwick Foods", "02886", 5000),  # Kent: West r2 -> East r1
        ("a3", "Providence Labs", "02903", 3000),  # Providence: West r2 -> West r3
        ("a5", "Westerly Stone", "02891", 4000),  # Washington: gone this year
    ]
    this_year = last_year[:3] + [("a4", "Bristol Boats", "02809", 2000)]  # Bristol: new
    for year, rows in (("2024", last_year), ("2025", this_year)):  # scored: no model to fit
        pd.DataFrame(rows, columns=cols).assign(score=50).to_csv(
            d / f"accounts_{year}.csv", index=False
        )
    r = run_cli(
        "diff", d / "old.csv", d / "new.csv", "--units", d / "units.parquet",
        "--accounts", d / "accounts_2025.csv", "--old-accounts", d / "accounts_2024.csv",
        "--reps", d / "reps.csv", "--old-reps", d / "old_reps.csv", "--balance", "population",
        "--out", d / "out",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return d / "out", r.stdout


def test_account_rows_exact(case):
    out, _ = case
    a = pd.read_csv(out / "account_changes.csv", dtype=str, keep_default_na=False)
    got = a[["change", "account_id", "old_territory", "new_territory", "old_owner",
             "new_owner", "potential"]].values.tolist()  # fmt: skip
    assert got == [
        ["moved", "a2", "West", "East", "r2", "r1", "5000.0"],
        ["lost", "a5", "West", "", "r2", "", "4000.0"],
        ["moved", "a3", "West", "West", "r2", "r3", "3000.0"],
        ["new", "a4", "", "East", "", "r1", "2000.0"],
    ]  # a1 keeps its owner: not listed


def test_zip_rows_are_the_zips_whose_owner_changes(case):
    from patchmap import geodata
    from patchmap.export import zip_to_rep
    from patchmap.units.county import county_units

    out, _ = case
    z = pd.read_csv(out / "zip_changes.csv", dtype=str)
    units = county_units(["RI"])
    routed = zip_to_rep(units, units["unit_id"].map(OLD).to_numpy())
    moved_units = {"44003", "44007", "44009"}  # Kent to r1; Providence, Washington to r3
    assert set(z["zip"]) == set(routed.loc[routed["unit_id"].isin(moved_units), "zip"])
    assert z["zip"].is_unique and set(z["state"]) == {"RI"}
    owners = dict(zip(z["zip"], z["old_owner"] + ">" + z["new_owner"], strict=True))
    assert owners["02886"] == "r2>r1" and owners["02903"] == "r2>r3"
    assert z[["zip", "accounts", "potential"]].head(2).values.tolist() == [
        ["02886", "1", "5000.0"],
        ["02903", "1", "3000.0"],
    ]  # sorted by this year's potential
    assert (z["accounts"].iloc[2:] == "0").all()
    assert set(geodata.zip_crosswalk().query("zip in @z.zip")["state"]) == {"RI"}


def test_rep_totals_exact(case):
    out, stdout = case
    t = pd.read_csv(out / "rep_totals.csv").set_index("owner")
    cols = ["accounts_before", "accounts_after", "gained", "given_away", "new", "lost",
            "potential_before", "potential_after", "potential_gained", "potential_given_away"]  # fmt: skip
    assert t[cols].to_dict("index") == {
        "r1": dict(zip(cols, [1, 3, 1, 0, 1, 0, 1000.0, 8000.0, 5000.0, 0.0], strict=True)),
        "r2": dict(zip(cols, [3, 0, 0, 2, 0, 1, 12000.0, 0.0, 0.0, 8000.0], strict=True)),
        "r3": dict(zip(cols, [0, 1, 1, 0, 0, 0, 0.0, 3000.0, 3000.0, 0.0], strict=True)),
    }
    assert "2 accounts change owner (potential 8,000)" in stdout
    assert "1 account is new since last year (potential 2,000)" in stdout
    assert "1 account is gone since last year (potential 4,000)" in stdout


def test_summary_explains_why_a_territory_stays_off_target(case):
    out, _ = case
    md = (out / "diff.md").read_text()
    off = pd.read_csv(out / "off_target.csv", dtype={"territory": str})
    west = off[off["territory"] == "West"].iloc[0]
    assert west["owner"] == "r3" and west["measure"] == "population"
    assert west["why"].startswith("unit 44007 alone holds")  # Providence outweighs a share
    assert "## Territories off target in new" in md and west["why"] in md
    east = off[off["territory"] == "East"].iloc[0]  # Washington is too little, Providence too much
    assert east["why"].startswith("the units on its border it could take over without overshooting")
    assert "| r1 |" in md and "Largest hand-overs" in md


def test_diff_without_reps_matches_territories_by_overlap(case, tmp_path):
    out, _ = case
    d = out.parent
    relabelled = pd.read_csv(d / "old.csv", dtype=str).replace({"East": "A", "West": "B"})
    relabelled.to_csv(tmp_path / "relabelled.csv", index=False)
    r = run_cli("diff", d / "old.csv", tmp_path / "relabelled.csv", "--units", d / "units.parquet",
                "--accounts", d / "accounts_2025.csv", "--out", tmp_path / "o")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert pd.read_csv(tmp_path / "o" / "zip_changes.csv").empty
    assert pd.read_csv(tmp_path / "o" / "account_changes.csv").empty
    assert "none is listed as new or lost" in r.stdout
    r = run_cli("diff", d / "old.csv", d / "new.csv", "--out", tmp_path / "x")
    assert r.returncode == 2 and "--units" in r.stderr


def test_run_realignment_tells_new_accounts_from_moved(tmp_path):
    """A plan file realigning last year's plan with last year's accounts: new accounts are
    listed as new (not moved), gone ones as lost, and diff.md is written."""
    import numpy as np

    from patchmap.sample import sample_accounts

    acc = sample_accounts(["RI"], n=900, seed=11)
    rng = np.random.default_rng(2)
    acc["score"], acc["potential"] = rng.uniform(0, 100, len(acc)), rng.gamma(2, 1e4, len(acc))
    this_year, last_year = acc.iloc[:850], pd.concat([acc.iloc[30:850], acc.iloc[850:]])
    this_year.to_csv(tmp_path / "accounts.csv", index=False)
    last_year.to_csv(tmp_path / "last_year.csv", index=False)
    body = """[accounts]
path = "{acc}"
[units]
kind = "zcta"
region = "RI"
[partition]
territories = 3
balance = "accounts"
effort = 0
{extra}
[output]
dir = "{out}"
"""
    (tmp_path / "a.toml").write_text(body.format(acc="last_year.csv", extra="", out="y1"))
    r = run_cli("run", tmp_path / "a.toml")
    assert r.returncode == 0, r.stderr[-2000:]
    extra = 'current = "y1/plan.csv"\ncurrent_accounts = "last_year.csv"\ntolerance = 0.5\nmax_moved = 20'
    (tmp_path / "b.toml").write_text(body.format(acc="accounts.csv", extra=extra, out="y2"))
    r = run_cli("run", tmp_path / "b.toml")
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "y2"
    changes = pd.read_csv(out / "account_changes.csv", dtype=str)
    new_ids = set(this_year["account_id"].iloc[:30])
    gone = set(last_year["account_id"].iloc[-50:])
    placed = set(pd.read_csv(out / "assignments.csv", dtype=str)["account_id"])
    assert set(changes.loc[changes["change"] == "new", "account_id"]) == new_ids & placed
    assert set(changes.loc[changes["change"] == "lost", "account_id"]) <= gone
    assert len(changes[changes["change"] == "lost"]) > 0
    moved = pd.read_csv(out / "plan.moved_accounts.csv", dtype=str)
    assert len(moved) and not set(moved["account_id"]) & new_ids
    assert {"account_id", "from", "to"} <= set(moved.columns)
    assert "new since last year" in (out / "diff.md").read_text()
