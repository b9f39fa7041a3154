"""Issue 17, items 3, 4, 5, 10, 11, 12, 13: bad numbers, bad files, Excel sheets, text
encodings and delimiters, through the CLI; and a property-based fuzz test of ingest."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from patchmap.accounts import load_accounts
from patchmap.errors import InputError

#: Scoring is not the subject here (ingest, rejects, files): the rules score, no model fit
#: (the look-alike model's fits were most of this module's time).
RULES = ("--model", "rules")


def _exit_2(r: subprocess.CompletedProcess, *words: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in last, (w, last)
    return last


def _tally(r: subprocess.CompletedProcess) -> tuple[int, int, int]:
    import re

    m = re.search(r"(\d+) read, (\d+) placed, (\d+) rejected", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return tuple(int(x) for x in m.groups())


@pytest.fixture(scope="module")
def accounts() -> pd.DataFrame:
    from patchmap.sample import sample_accounts

    return sample_accounts(["RI"], n=150, seed=2)


@pytest.fixture(scope="module")
def ri_units(tmp_path_factory, accounts):
    d = tmp_path_factory.mktemp("ri")
    accounts.to_csv(d / "accounts.csv", index=False)
    r = run_cli("layers", d / "accounts.csv", *RULES, "--units", "county", "--region", "RI",
                "--out", d / "units.parquet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return d


# --- item 3: Excel sheets ---------------------------------------------------------------------


def test_excel_reads_every_sheet_with_the_same_columns_and_says_so(tmp_path, accounts):
    x = tmp_path / "two.xlsx"
    with pd.ExcelWriter(x) as w:
        accounts.to_excel(w, sheet_name="East", index=False)
        accounts.assign(account_id=accounts["account_id"] + "b").to_excel(
            w, sheet_name="West", index=False
        )
    r = run_cli("score", x, *RULES, "--out", tmp_path / "s.csv")
    assert r.returncode == 0, r.stderr
    assert _tally(r) == (300, 300, 0)
    assert "'East' (150 rows)" in r.stderr and "'West' (150 rows)" in r.stderr
    r = run_cli("score", x, *RULES, "--sheet", "West", "--out", tmp_path / "w.csv")
    assert r.returncode == 0, r.stderr
    assert _tally(r) == (150, 150, 0)
    _exit_2(run_cli("score", x, "--sheet", "North", "--out", tmp_path / "n.csv"), "East, West")


def test_excel_sheets_with_other_columns_need_sheet_and_empty_first_sheet(tmp_path, accounts):
    x = tmp_path / "mixed.xlsx"
    with pd.ExcelWriter(x) as w:
        pd.DataFrame().to_excel(w, sheet_name="Cover", index=False)
        accounts.to_excel(w, sheet_name="Accounts", index=False)
        pd.DataFrame({"note": ["x"]}).to_excel(w, sheet_name="Notes", index=False)
    _exit_2(run_cli("score", x, "--out", tmp_path / "s.csv"), "--sheet", "Accounts")
    y = tmp_path / "cover.xlsx"
    with pd.ExcelWriter(y) as w:
        pd.DataFrame().to_excel(w, sheet_name="Cover", index=False)
        accounts.to_excel(w, sheet_name="Accounts", index=False)
    r = run_cli("score", y, *RULES, "--out", tmp_path / "s.csv")
    assert r.returncode == 0, r.stderr
    assert "read sheet 'Accounts'" in r.stderr
    z = tmp_path / "empty.xlsx"
    with pd.ExcelWriter(z) as w:
        pd.DataFrame().to_excel(w, sheet_name="A", index=False)
        pd.DataFrame().to_excel(w, sheet_name="B", index=False)
    _exit_2(run_cli("score", z, "--out", tmp_path / "s.csv"), "no rows in any sheet", "A, B")


# --- items 4, 5, 11: numbers ------------------------------------------------------------------


def test_bad_numbers_are_rejects_with_a_reason_not_a_crash(tmp_path, accounts):
    df = accounts.copy()
    for col in ("employees", "annual_revenue", "deal_size"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df.loc[0, "employees"] = float("inf")
    df.loc[1, "annual_revenue"] = 1e308
    df.loc[2, "deal_size"] = -500.0
    df["potential"] = 1000.0
    df.loc[3, "potential"] = float("inf")
    df.loc[4, "potential"] = -1.0
    df.to_csv(tmp_path / "a.csv", index=False)
    r = run_cli("score", tmp_path / "a.csv", *RULES, "--out", tmp_path / "s.csv")
    assert r.returncode == 0, r.stderr
    assert _tally(r) == (150, 145, 5)
    reasons = pd.read_csv(tmp_path / "s.rejects.csv").set_index("row")["reason"].to_dict()
    assert reasons == {
        1: "employees is not a finite number",
        2: "annual_revenue beyond 1e+15 in size",
        3: "negative deal_size",
        4: "potential is not a finite number",
        5: "negative potential",
    }
    r = run_cli("layers", tmp_path / "a.csv", *RULES, "--units", "county", "--region", "RI",
                "--out", tmp_path / "u.parquet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    units = pd.read_parquet(tmp_path / "u.parquet")
    assert units["potential"].max() < 1e9 and units["potential"].min() >= 0


def test_all_rows_invalid_names_the_file_and_writes_the_rejects(tmp_path, accounts):
    accounts.assign(account_id="").to_csv(tmp_path / "a.csv", index=False)
    for cmd in (("score",), ("layers", "--units", "county", "--region", "RI")):
        out = tmp_path / f"{cmd[0]}.{'csv' if cmd[0] == 'score' else 'parquet'}"
        last = _exit_2(run_cli(cmd[0], tmp_path / "a.csv", *cmd[1:], "--out", out),
                       "a.csv", "none of the 150 rows", "missing account_id")  # fmt: skip
        rejects = out.with_name(out.stem + ".rejects.csv")
        assert str(rejects) in last and len(pd.read_csv(rejects)) == 150
        assert not out.exists()


def test_no_account_in_the_region_is_exit_2(tmp_path, accounts):
    accounts.to_csv(tmp_path / "a.csv", index=False)
    r = run_cli("layers", tmp_path / "a.csv", *RULES, "--units", "county", "--region", "DE",
                "--out", tmp_path / "u.parquet")  # fmt: skip
    _exit_2(r, "none of the 150 rows")


def test_absurd_capacity_and_quota_are_exit_2(ri_units, tmp_path):
    plan = tmp_path / "plan.csv"
    r = run_cli("partition", ri_units / "units.parquet", "--id", "unit_id", "--balance",
                "accounts", "--territories", "2", "--effort", "0", "--out", plan)  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = run_cli("export", ri_units / "units.parquet", plan, "--capacity", "1e-300", "--out",
                tmp_path / "x")  # fmt: skip
    _exit_2(r, "capacity", "reps")
    r = run_cli("partition", ri_units / "units.parquet", "--id", "unit_id", "--balance",
                "accounts", "--territories", "2", "--quota", "1e308", "--out", plan)  # fmt: skip
    _exit_2(r, "--quota")


def test_a_balance_total_that_overflows_is_exit_2_not_a_100_percent_plan(ri_units, tmp_path):
    """Every unit at 1e307: the total overflows to inf, which once wrote a plan "100% off"."""
    import geopandas as gpd

    units = gpd.read_parquet(ri_units / "units.parquet")
    units["potential"] = 1e307
    units.to_parquet(tmp_path / "huge.parquet")
    r = run_cli("partition", tmp_path / "huge.parquet", "--id", "unit_id", "--balance",
                "potential", "--territories", "2", "--out", tmp_path / "p.csv")  # fmt: skip
    _exit_2(r, "'potential'", "too large to add up")
    assert not (tmp_path / "p.csv").exists()


# --- item 10: internal errors that were bad input ---------------------------------------------


def test_output_locations_that_cannot_be_written(ri_units, tmp_path):
    (tmp_path / "file").write_text("x")
    base = ("partition", ri_units / "units.parquet", "--id", "unit_id", "--balance", "accounts",
            "--territories", "2", "--out")  # fmt: skip
    _exit_2(run_cli(*base, tmp_path / "file" / "plan.csv"), "is a file, not a folder")
    _exit_2(run_cli(*base, tmp_path), "directory")
    r = run_cli("score", ri_units / "accounts.csv", *RULES, "--out", tmp_path / "scored")
    assert r.returncode == 0, r.stderr  # no suffix: a CSV named as asked
    assert (tmp_path / "scored.rejects.csv").exists() and (tmp_path / "scored").is_file()


def test_k_equal_to_units_and_negative_seed(ri_units, tmp_path):
    n = len(pd.read_parquet(ri_units / "units.parquet"))
    r = run_cli("partition", ri_units / "units.parquet", "--id", "unit_id", "--balance",
                "accounts", "--territories", str(n), "--out", tmp_path / "p.csv")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert pd.read_csv(tmp_path / "p.csv")["territory"].nunique() == n
    r = run_cli("partition", ri_units / "units.parquet", "--id", "unit_id", "--balance",
                "accounts", "--territories", str(n + 1), "--out", tmp_path / "p1.csv")  # fmt: skip
    _exit_2(r, f"{n + 1} territories asked for but only {n} units")  # not "n_territories="
    r = run_cli("partition", ri_units / "units.parquet", "--id", "unit_id", "--balance",
                "accounts", "--territories", "2", "--seed", "-1", "--out", tmp_path / "q.csv")  # fmt: skip
    _exit_2(r, "--seed")


def test_tampered_cache_manifest_is_exit_2(ri_units, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "manifest.json").write_text('{"format": 1, "entries": {"zcta/2020": 5}}')
    monkeypatch.setenv("PATCHMAP_CACHE", str(cache))
    r = run_cli("layers", ri_units / "accounts.csv", *RULES, "--units", "zcta", "--region",
                "RI", "--out", tmp_path / "u.parquet")  # fmt: skip
    _exit_2(r, "manifest.json", "zcta/2020")
    assert not (tmp_path / "u.parquet").exists()


# --- item 12: text files as they arrive -------------------------------------------------------


def test_duplicate_columns_na_ids_bare_cr_delimiters_and_encodings(tmp_path):
    def score(name: str, body: bytes, *extra: str) -> subprocess.CompletedProcess:
        (tmp_path / name).write_bytes(body)
        return run_cli("score", tmp_path / name, *extra, "--out", tmp_path / f"{name}.out.csv")

    _exit_2(score("dup.csv", b"account_id,zip,zip\nA1,02903,02840\n"), "'zip' appears twice")
    r = score("na.csv", b"account_id,zip\nNA,02903\nNone,02840\nnull,02886\nA4,\n")
    assert r.returncode == 0, r.stderr
    assert _tally(r) == (4, 3, 1)
    out = pd.read_csv(tmp_path / "na.csv.out.csv", dtype=str, keep_default_na=False)
    assert sorted(out["account_id"]) == ["NA", "None", "null"]
    r = score("cr.csv", b"account_id,zip,name\r\nA1,02903,Blue\rFoods\r\nA2,02840,x\r\n")
    assert r.returncode == 0, r.stderr
    assert _tally(r) == (2, 2, 0)  # the bare CR stays in the name: no phantom row
    # and the output quotes it, so Excel or pandas read two rows back, not three
    back = pd.read_csv(tmp_path / "cr.csv.out.csv", dtype=str)
    assert back["name"].tolist() == ["Blue\rFoods", "x"]
    r = run_cli("score", tmp_path / "cr.csv.out.csv", "--out", tmp_path / "again.csv")
    assert r.returncode == 0 and _tally(r) == (2, 2, 0), r.stderr
    r = score("semi.csv", b"account_id;zip;employees\nA1;02903;5\nA2;02840;7\n")
    assert r.returncode == 0, r.stderr
    assert _tally(r) == (2, 2, 0) and "semicolon-separated" in r.stderr
    r = score("tab.txt", b"account_id\tzip\nA1\t02903\n")
    assert r.returncode == 0, r.stderr
    latin = "account_id,zip,name\nA1,02903,Caf\u00e9 Ol\u00e9\n".encode("latin-1")
    _exit_2(score("latin.csv", latin), "not UTF-8", "--encoding")
    r = score("latin.csv", latin, "--encoding", "latin-1")
    assert r.returncode == 0, r.stderr
    out = pd.read_csv(tmp_path / "latin.csv.out.csv", dtype=str)
    assert out["name"].tolist() == ["Caf\u00e9 Ol\u00e9"]


# --- item 13: ZIP+4 as an 8-digit number ------------------------------------------------------


def test_zip_plus_4_that_lost_its_leading_zero(tmp_path):
    (tmp_path / "a.csv").write_text("account_id,zip\nA1,10050393\nA2,029031234\nA3,02903-1234\n")
    r = run_cli("score", tmp_path / "a.csv", "--out", tmp_path / "s.csv")
    assert r.returncode == 0, r.stderr
    assert _tally(r) == (3, 3, 0)
    assert pd.read_csv(tmp_path / "s.csv", dtype=str)["zip"].tolist() == ["01005", "02903", "02903"]


# --- property-based: whatever the file holds, ingest places or rejects every row ------------

_CELL = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "NA", "null", "inf", "-inf", "nan", "1e308", "-1", "=1+1", "@x",
                     "02903", "2903", "02903-1234", "10050393", "41.8", "-71.4", "999"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)  # fmt: skip
_COLUMNS = ["account_id", "zip", "lat", "lon", "employees", "potential", "name"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.sampled_from(_COLUMNS), min_size=1, max_size=6, unique=True),
    st.lists(st.lists(_CELL, min_size=6, max_size=6), min_size=1, max_size=12),
    st.sampled_from([",", ";", "\t"]),
)
def test_ingest_fuzz_places_or_rejects_every_row(tmp_path, columns, rows, sep):
    import csv

    path = tmp_path / "fuzz.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=sep)
        w.writerow(columns)
        for row in rows:
            w.writerow(row[: len(columns)])
    try:
        result = load_accounts(path)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert result.n_placed + result.n_rejected == result.n_read
    assert result.rejects["reason"].notna().all()
    acc = result.accounts
    assert acc["lat"].between(-90, 90).all() and acc["lon"].between(-180, 180).all()
    for col in ("employees", "potential"):
        if col in acc.columns and pd.api.types.is_numeric_dtype(acc[col]):
            v = acc[col].dropna()
            assert ((v >= 0) & (v <= 1e15)).all()


def test_h3_without_region_rejects_points_outside_the_states(tmp_path, accounts):
    df = accounts.head(40).copy()
    df["lat"], df["lon"] = df["lat"].astype(float), df["lon"].astype(float)
    for i, (la, lo) in enumerate([(0.0, 0.0), (39.9, 116.4), (13.7, 100.5)]):
        df.loc[i, ["lat", "lon"]] = [la, lo]
    df.to_csv(tmp_path / "a.csv", index=False)
    r = run_cli("layers", tmp_path / "a.csv", "--units", "h3", "--resolution", "6", "--out",
                tmp_path / "h.parquet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert _tally(r) == (40, 37, 3)
    rejects = pd.read_csv(tmp_path / "h.rejects.csv")
    assert sorted(rejects["row"]) == [1, 2, 3]
    assert set(pd.read_parquet(tmp_path / "h.parquet")["state"].dropna()) <= {"RI", "MA", "CT"}


def test_layers_reads_the_output_of_score(tmp_path, accounts):
    accounts.to_csv(tmp_path / "a.csv", index=False)
    r = run_cli("score", tmp_path / "a.csv", *RULES, "--out", tmp_path / "scored.parquet")
    assert r.returncode == 0, r.stderr
    r = run_cli("layers", tmp_path / "scored.parquet", "--units", "county", "--region", "RI",
                "--out", tmp_path / "u.parquet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert _tally(r) == (150, 150, 0)


def test_near_perfect_auc_is_flagged_as_probable_leakage(tmp_path):
    import json

    from patchmap.sample import sample_accounts

    df = sample_accounts(["RI"], n=400, seed=2)
    df["renewal_amount"] = df["deal_size"].where(df["outcome"] == "won")  # known after a win
    df.to_csv(tmp_path / "a.csv", index=False)
    r = run_cli("score", tmp_path / "a.csv", "--out", tmp_path / "s.csv")
    assert r.returncode == 0, r.stderr
    assert "probable leakage" in r.stderr and "renewal_amount" in r.stderr
    card = json.loads((tmp_path / "s.model.json").read_text())
    assert "renewal_amount" in card["leakage_warning"]
    df.drop(columns="renewal_amount").to_csv(tmp_path / "b.csv", index=False)
    r = run_cli("score", tmp_path / "b.csv", "--out", tmp_path / "t.csv")
    assert r.returncode == 0, r.stderr
    assert "leakage" not in r.stderr


# --- item 12: locks the partitioner cannot keep name the locked file and its lines -----------


@pytest.fixture(scope="module")
def two_states(tmp_path_factory):
    """County units of RI (5) and DE (3), and a 2-territory plan of them."""
    from patchmap.sample import sample_accounts

    d = tmp_path_factory.mktemp("ri_de")
    sample_accounts(["RI", "DE"], n=200, seed=4).to_csv(d / "accounts.csv", index=False)
    r = run_cli("layers", d / "accounts.csv", *RULES, "--units", "county", "--region",
                "RI,DE", "--out", d / "units.parquet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = run_cli("partition", d / "units.parquet", "--id", "unit_id", "--balance", "accounts",
                "--territories", "2", "--effort", "0", "--out", d / "plan.csv")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return d


def test_locked_errors_name_the_file_and_lines(two_states, tmp_path):
    d = two_states
    units = pd.read_parquet(d / "units.parquet", columns=["unit_id", "state"])
    ri, de = (units.loc[units["state"] == s, "unit_id"].tolist() for s in ("RI", "DE"))
    plan = pd.read_csv(d / "plan.csv", dtype=str)
    home = ri[0]
    zip_of_home = {"44001": "02806", "44003": "02818", "44005": "02840", "44007": "02903",
                   "44009": "02879"}[home]  # fmt: skip
    cases = {  # locked file body, extra options, words of the one-line error
        "within": (f"{ri[0]},A\n{de[0]},A\n", ("--territories", "4", "--within", "state"),
                   ("lines 2, 3:", "several state values")),
        "too_many": ("".join(f"{u},T{i}\n" for i, u in enumerate(ri[:4])),
                     ("--territories", "3"), ("line 5:", "4 territories named")),
        "group": (f"{ri[0]},A\n{ri[1]},B\n{ri[2]},C\n", ("--territories", "3", "--within",
                  "state"), ("lines 2, 3, 4:", "state 'RI' gets 1 territory but holds locked units of 3")),
        "home": (f"{home},bob\n", ("--reps", tmp_path / "reps.csv"),
                 ("line 2:", f"'{home}' is locked to 'bob' but is the home of rep 'ana'")),
        "current": (f"{ri[1]},T01\n{ri[2]},T09\n", ("--current", d / "plan.csv"),
                    ("line 3:", "'T09' is not one of the territories")),
    }  # fmt: skip
    (tmp_path / "reps.csv").write_text(f"rep_id,zip\nana,{zip_of_home}\nbob,19901\n")
    assert set(plan["territory"]) == {"T01", "T02"}
    for name, (body, extra, words) in cases.items():
        locked = tmp_path / f"{name}.csv"
        locked.write_text("unit_id,territory\n" + body)
        r = run_cli("partition", d / "units.parquet", "--id", "unit_id", "--balance",
                    "accounts", "--locked", locked, *extra, "--out", tmp_path / "p.csv")  # fmt: skip
        last = _exit_2(r, f"error: {locked}: ", *words)
        assert "locked:" not in last and "within=" not in last, last
    assert not (tmp_path / "p.csv").exists()


# --- item 13: a point off every ZCTA (across the border, offshore) falls back to its ZIP -------


def test_border_and_offshore_points_fall_back_to_their_zips_zcta(tmp_path):
    """Brownsville (78521, Voronoi ZCTA cells: TX has no bundled polygons): accounts whose
    coordinates lie across the Rio Grande or in the Gulf are placed by their ZIP, said in a
    note; one without a ZIP there stays a reject with its reason."""
    pts = [(25.94, -97.49), (25.80, -97.50), (25.70, -97.60), (26.10, -97.10), (25.90, -97.0)]
    rows = [f"B{i},{la},{lo},78521" for i, (la, lo) in enumerate(pts)] + ["B9,25.80,-97.50,"]
    (tmp_path / "bro.csv").write_text("account_id,lat,lon,zip\n" + "\n".join(rows) + "\n")
    out = tmp_path / "u.parquet"
    r = run_cli("layers", tmp_path / "bro.csv", "--units", "zcta", "--region", "TX", "--out", out)
    assert r.returncode == 0, r.stderr
    assert _tally(r) == (6, 5, 1)
    assert "accounts whose lat/lon lie in no ZCTA of the region (across a border or " in r.stderr
    units = pd.read_parquet(out, columns=["unit_id", "accounts"]).set_index("unit_id")
    assert units.loc["78521", "accounts"] >= 4  # the four off every cell, by their ZIP
    rejects = pd.read_csv(tmp_path / "u.rejects.csv")
    assert rejects.to_dict("records") == [
        {"row": 6, "account_id": "B9", "reason": "outside the region's units"}
    ]


def test_reps_file_mixing_zip_only_and_lat_lon_rows(two_states, tmp_path):
    reps = tmp_path / "reps.csv"
    reps.write_text("rep_id,zip,lat,lon\nana,02903,,\nbob,,39.74,-75.55\n")
    r = run_cli("partition", two_states / "units.parquet", "--id", "unit_id", "--balance",
                "accounts", "--reps", reps, "--effort", "0", "--out", tmp_path / "p.csv")  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = pd.read_csv(tmp_path / "p.reps.csv", dtype={"home_unit": str}).set_index("rep_id")
    assert report.loc["ana", "home_unit"] == "44007"  # Providence, by the ZIP
    assert report.loc["bob", "home_unit"] == "10003"  # New Castle, by lat/lon
    assert (report.loc["bob", ["lat", "lon"]] == [39.74, -75.55]).all()
