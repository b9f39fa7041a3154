"""`patchmap demo` on the bundled California data writes every output of the chain."""

from __future__ import annotations

import pandas as pd

from conftest import run_cli
from patchmap import geodata


def test_demo_writes_the_five_outputs(tmp_path):
    out = tmp_path / "demo"
    # the CLI's `main` in this process (tests/test_cli.py runs `python -m patchmap` in a
    # subprocess); the outputs are checked here, the default search's plans by
    # tests/test_golden.py and test_partition.py: no anytime search
    r = run_cli("demo", "--out", out, "--effort", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    for name in [
        "map.html",
        "zip_to_rep.csv",
        "assignments.csv",
        "territories.geojson",
        "summary.csv",
    ]:
        assert (out / name).stat().st_size > 0, name
    assert r.stdout.strip().splitlines()[-1].endswith("map.html")

    tally = next(line for line in r.stdout.splitlines() if " read, " in line)
    n_read, n_placed, n_rejected = (int(tally.split()[i].rstrip(",")) for i in (0, 2, 4))
    assert n_read == 20_000 == n_placed + n_rejected

    plan = pd.read_csv(out / "plan.csv", dtype=str)
    ca = geodata.zcta_polygons(["CA"])
    assert sorted(plan["unit_id"]) == sorted(ca["zcta"])
    assert plan["territory"].nunique() == 20

    z2r = pd.read_csv(out / "zip_to_rep.csv", dtype=str)
    assert set(z2r["zcta"]) == set(ca["zcta"])  # every ZCTA of the region appears once or more
    assert z2r["zip"].is_unique
    xw = geodata.zip_crosswalk()
    assert set(xw.loc[xw["state"] == "CA", "zip"]) <= set(z2r["zip"])  # every CA ZIP, once
    assert set(z2r["zip"]) == set(xw.loc[xw["zcta"].isin(ca["zcta"]), "zip"])  # nothing else
    assert z2r["territory"].notna().all()

    assignments = pd.read_csv(out / "assignments.csv", dtype=str)
    assert len(assignments) == n_placed
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 20
