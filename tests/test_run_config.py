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
[units]
kind = "h3"
resolution = 6
region = ["RI"]
[partition]
territories = 4
balance = "accounts"
tolerance = 5
seed = 3
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
        ("[units]\nkind='zcta'\n", "[accounts] path is required"),
        (
            "[accounts]\npath='a.csv'\n[units]\nkind='hex'\n",
            "units: expected one of h3, zcta, county",
        ),
        (
            "[accounts]\npath='a.csv'\n[partition]\nterritories='ten'\n",
            "[territories] expected int",
        ),
        ("[accounts]\npath='a.csv'\n[colors]\n", "unknown section [colors]"),
        ("[accounts\n", "not valid TOML"),
    ],
)
def test_config_errors_name_the_key(tmp_path, body, expected):
    path = tmp_path / "plan.toml"
    path.write_text(body)
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
