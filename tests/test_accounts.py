"""Ingest and geocoding: every row placed or rejected with a reason, errors in one line."""

from __future__ import annotations

import pandas as pd
import pytest

from patchmap.accounts import load_accounts, validate_accounts
from patchmap.errors import InputError
from patchmap.geocode import normalize_zip, zip_locations


def test_normalize_zip_repairs_what_spreadsheets_break():
    raw = pd.Series(
        [
            "02903",
            "2903",
            2903,
            "02903-1234",
            "029031234",
            "2903.0",
            " 94105 ",
            "abc",
            None,
            "123456",
        ]
    )
    assert normalize_zip(raw).tolist() == [
        "02903",
        "02903",
        "02903",
        "02903",
        "02903",
        "02903",
        "94105",
        pd.NA,
        pd.NA,
        pd.NA,
    ]


def test_po_box_zip_resolves_to_its_containing_zcta():
    from patchmap import geodata

    cw = geodata.zip_crosswalk()
    po = cw[
        (cw["state"] == "CA")
        & cw["zip_type"].str.contains("Post Office")
        & (cw["zip"] != cw["zcta"])
    ]
    assert len(po) > 0
    zips = po["zip"].head(20).reset_index(drop=True)
    located = zip_locations(zips)
    assert located["zcta"].tolist() == po["zcta"].head(20).tolist()
    assert located["lat"].between(32, 42.1).all()


def test_every_row_placed_or_rejected_with_reason():
    df = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "e", "f", "g"],
            "lat": [37.77, None, None, 137.0, None, "x", None],
            "lon": [-122.41, None, None, -122.0, None, -122.0, None],
            "zip": ["94105", "2903", "00000", "94105", None, None, "9410"],
        }
    )
    res = validate_accounts(df, source="t.csv")
    assert res.n_read == res.n_placed + res.n_rejected == 7
    placed = res.accounts.set_index("account_id")
    assert placed.loc["a", "location_source"] == "latlon"
    assert placed.loc["b", "zip"] == "02903" and placed.loc["b", "location_source"] == "zip"
    reasons = res.rejects.set_index("account_id")["reason"]
    assert reasons["c"] == "unknown ZIP 00000"
    # a valid ZIP beside unusable coordinates: placed by the ZIP (issue 17)
    assert placed.loc["d", "location_source"] == "zip" and placed.loc["d", "zcta"] == "94105"
    assert reasons["e"] == "no location (lat/lon or zip)"
    assert reasons["f"] == "lat/lon incomplete or not numeric"
    assert reasons["g"].startswith("unknown ZIP 09410")
    assert res.rejects["row"].tolist() == [3, 5, 6, 7]


def test_column_mapping_and_leading_zero_ids(tmp_path):
    path = tmp_path / "crm.csv"
    path.write_text("Id,Latitude,Longitude\n007,41.82,-71.41\n008,41.7,-71.5\n")
    res = load_accounts(path, {"account_id": "Id", "lat": "Latitude", "lon": "Longitude"})
    assert res.accounts["account_id"].tolist() == ["007", "008"]
    assert res.n_rejected == 0


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name,lat,lon\nx,1,2\n", "missing required column 'account_id'"),
        ("account_id,name\n1,x\n", "no location columns"),
        ("account_id,lat,lon\n1,1,2\n1,3,4\n", "duplicated ids (e.g. '1' on rows 1, 2)"),
        ("account_id,lat,lon\n1,north,west\n2,south,east\n", "column 'lat' must be numeric"),
        ("", "file is empty"),
        ("account_id,lat,lon\n", "no rows"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        load_accounts(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_excel_input_with_dropped_leading_zero(tmp_path):
    path = tmp_path / "accounts.xlsx"
    pd.DataFrame({"account_id": [1, 2], "zip": [2903, 19901]}).to_excel(path, index=False)
    res = load_accounts(path)
    assert res.n_placed == 2
    assert res.accounts["zip"].tolist() == ["02903", "19901"]
    assert res.accounts["account_id"].tolist() == ["1", "2"]
