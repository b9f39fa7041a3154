"""compare --reps: travel from the reps' homes in both plans, never silently from centroids.

A reps file's ``territory`` column names one plan's labels (or neither: last year's plan
used other names); the plan it does not fit links its reps by the territory holding their
homes, and says so. A reps file that links to neither plan is exit 2.
"""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import run_cli
from patchmap import geodata
from patchmap.compare import compare_plans
from patchmap.errors import InputError
from patchmap.partition import Partitioner

HOMES = {"ana": "02903", "ben": "02840", "cy": "19901", "dee": "20001"}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmpreps")
    units = geodata.zcta_polygons(["RI", "DE", "DC"]).rename(columns={"zcta": "unit_id"})
    units.to_parquet(d / "units.parquet")
    plan = Partitioner(4, "population", seed=0, effort=0).fit(units)
    plan.to_csv(d / "old.csv")
    pts = units.set_index("unit_id").geometry.representative_point()
    homes = pd.DataFrame(
        {
            "rep_id": list(HOMES),
            "lat": [round(pts[z].y, 5) for z in HOMES.values()],
            "lon": [round(pts[z].x, 5) for z in HOMES.values()],
        }
    )
    old = plan.assignment
    home_terr = [old[z] for z in HOMES.values()]
    assert len(set(home_terr)) == 4  # one home per territory of the old plan
    # the new plan: the old one relabelled by rep, as a rep-seeded plan is labelled
    new = old.map(dict(zip(home_terr, HOMES, strict=True)))
    pd.DataFrame({"unit_id": new.index, "territory": new.to_numpy()}).to_csv(
        d / "new.csv", index=False
    )
    homes.assign(territory=list(HOMES)).to_csv(d / "reps.csv", index=False)
    return d, units, old, new, homes


def _travel(cmp, name):
    return cmp.table.set_index("metric").loc["travel (km)", name]


def test_reps_link_to_the_plan_their_territory_column_does_not_name(case):
    _, units, old, new, homes = case
    reps = homes.assign(territory=list(HOMES))  # names the new plan's labels only
    cmp = compare_plans(old, new, units, reps=reps, names=("old", "new"))
    # the same territories with the same reps: travel from the homes is equal on both sides
    assert _travel(cmp, "old") == pytest.approx(_travel(cmp, "new"))
    without = compare_plans(old, new, units, names=("old", "new"))
    assert _travel(cmp, "old") != pytest.approx(_travel(without, "old"))  # homes, not centroids
    assert any(w.startswith("old: ") and "holding their home" in w for w in cmp.warnings)
    assert not any(w.startswith("new: ") for w in cmp.warnings)


def test_reps_that_fit_neither_plan_are_an_error(case):
    _, units, old, new, homes = case
    reps = pd.DataFrame({"rep_id": list(HOMES), "territory": ["X1", "X2", "X3", "X4"]})
    with pytest.raises(InputError, match=r"\(reps matches neither old nor new\)"):
        compare_plans(old, new, units, reps=reps, names=("old", "new"))  # library words


def test_compare_cli_says_how_reps_were_linked(case, tmp_path):
    d = case[0]
    r = run_cli("compare", d / "old.csv", d / "new.csv", "--units", d / "units.parquet",
                "--reps", d / "reps.csv", "--no-tiles", "--out", tmp_path / "cmp")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert "note: old: the reps' territory column does not fit this plan" in out
    assert "holding their home" in (tmp_path / "cmp" / "compare.md").read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text("rep_id,territory\nana,X1\nben,X2\n")
    r = run_cli("compare", d / "old.csv", d / "new.csv", "--units", d / "units.parquet",
                "--reps", bad, "--no-tiles", "--out", tmp_path / "cmp2")  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "neither" in lines[0]
    assert "(--reps matches neither" in lines[0]  # the CLI names its flag
