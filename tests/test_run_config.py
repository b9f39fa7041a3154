"""`patchmap run CONFIG.toml`: every stage from one file, here on H3 cells; config errors exit 2."""

from __future__ import annotations

import geopandas as gpd
import h3
import pandas as pd
import pytest

from conftest import run_cli
from patchmap.config import load_config
from patchmap.errors import InputError


def test_run_h3_plan_from_config(tmp_path, ri_accounts_csv):
    config = tmp_path / "plan.toml"
    config.write_text(
        f"""
[accounts]
path = "{ri_accounts_csv.as_posix()}"
[scoring]
model = "rules"
[units]
kind = "h3"
resolution = 6
region = ["RI"]
[partition]
territories = 4
balance = "accounts"
tolerance = 5
seed = 3
effort = 0
[map]
tiles = false
[output]
dir = "out"
"""
    )
    r = run_cli("run", config)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "out"
    units = gpd.read_parquet(out / "units.parquet")
    assert all(h3.is_valid_cell(c) and h3.get_resolution(c) == 6 for c in units["unit_id"])
    plan = pd.read_csv(out / "plan.csv", dtype=str)
    assert sorted(plan["unit_id"]) == sorted(units["unit_id"]) and plan["territory"].nunique() == 4
    # Accounts outside Rhode Island are rejected with a reason, not dropped.
    tally = next(line for line in r.stdout.splitlines() if " read, " in line)
    n_read, n_placed, n_rejected = (int(tally.split()[i].rstrip(",")) for i in (0, 2, 4))
    assert n_read == n_placed + n_rejected and n_rejected > 0
    rejects = pd.read_csv(out / "units.rejects.csv")
    assert len(rejects) == n_rejected
    assert units["accounts"].sum() == n_placed
    z2r = pd.read_csv(out / "zip_to_rep.csv", dtype=str)
    assert z2r["zip"].is_unique and z2r["territory"].notna().all()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[accounts]\ncolumns={}\n", "[accounts] path is required"),
        ("[units]\nkind='hex'\n", "[units] kind: expected one of h3, zcta, county"),
        ("[partition]\nterritories='ten'\n", "[partition] territories: expected an integer"),
        ("[colors]\n", "unknown section [colors]"),
        ("[maps]\n", "unknown section [maps] (did you mean 'map'?)"),
        ("[accounts\n", "not valid TOML"),
        # typos in every table are errors, not silently ignored (issue 17.7)
        ("[output]\ndirectory='x'\n", "[output] unknown key 'directory' (did you mean 'dir'?)"),
        ("[map]\ntile=false\n", "[map] unknown key 'tile' (did you mean 'tiles'?)"),
        ("[accounts]\ncolumn={lat='y'}\n", "[accounts] unknown key 'column'"),
        ("[units]\nresolutoin=6\n", "[units] unknown key 'resolutoin'"),
        ("[partition]\nquota_floor='80%'\n", "[partition] quota_floor needs quota"),
        # wrong types and ranges name the key, in the plan file's units (percent)
        ("[partition]\nseed='x'\n", "[partition] seed: expected an integer >= 0, got str 'x'"),
        ("[partition]\ntolerance=0\n", "tolerance: expected a percentage in (0, 100), got 0"),
        ("[partition]\ntolerance=true\n", "tolerance: expected a percentage"),
        ("[units]\nresolution=16\n", "[units] resolution: expected an integer in [0, 15]"),
        ("[map]\ntiles='no'\n", "[map] tiles: expected true or false, got str 'no'"),
        ("[scoring]\nmin_labelled='lots'\n", "[scoring] min_labelled: expected int, got str"),
        ("[scoring]\nmodle='rules'\n", "[scoring] unknown key 'modle' (did you mean 'model'?)"),
        ("[scoring]\nmodel='forest'\n", "[scoring] model must be"),
        ("[scoring.rules]\nflag_points={uses_crm='x'}\n", "[scoring].rules flag_points"),
    ],
)
def test_config_errors_name_the_key(tmp_path, body, expected):
    path = tmp_path / "plan.toml"
    (tmp_path / "a.csv").write_text("account_id,zip\n1,02903\n")
    path.write_text(body if "[accounts" in body else "[accounts]\npath='a.csv'\n" + body)
    with pytest.raises(InputError) as err:
        load_config(path)
    assert expected in str(err.value)


def test_run_config_error_exits_2(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text("[units]\nkind='hex'\n[accounts]\npath='x.csv'\n")
    r = run_cli("run", path)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_rules_scoring_from_config(tmp_path, ri_accounts_csv):
    """Teams without history pick the rules score and its weights in the plan file."""
    from patchmap.config import load_config
    from patchmap.pipeline import run_plan

    config = tmp_path / "plan.toml"
    config.write_text(
        f"""
[accounts]
path = "{ri_accounts_csv.as_posix()}"
[scoring]
model = "rules"
[scoring.rules]
industry_points = {{ software = 40, retail = 1 }}
flag_points = {{ uses_crm = 30 }}
[units]
kind = "county"
[partition]
territories = 3
balance = "score"
effort = 0
[map]
tiles = false
[output]
dir = "out"
"""
    )
    result = run_plan(load_config(config))
    card = (tmp_path / "out" / "accounts_scored.model.json").read_text()
    assert '"model": "rules"' in card and "rules chosen in the configuration" in card
    scored = pd.read_parquet(result.outputs["scored"])
    by_industry = scored.groupby("industry")["score"].mean()
    assert by_industry["Software"] > by_industry["Retail"]
