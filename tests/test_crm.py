"""CRM-shaped exports read back: Salesforce territory metadata and Data Loader files, the
HubSpot owner import, and zip_to_rep.xlsx with ZIPs as text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from conftest import run_cli
from patchmap.crm import developer_names, postal_code_rules

NS = {"m": "http://soap.sforce.com/2006/04/metadata"}


@pytest.fixture(scope="module")
def ri(tmp_path_factory):
    """Rhode Island counties, a two-territory plan, reps with emails and a few accounts."""
    from patchmap.io import write_units
    from patchmap.units.county import county_units

    d = tmp_path_factory.mktemp("crm")
    units = county_units(["RI"])  # 44001 Bristol 44003 Kent 44005 Newport 44007 Providence ...
    write_units(units, d / "units.parquet")
    pd.DataFrame({"unit_id": units["unit_id"],
                  "territory": ["East" if u in ("44001", "44005") else "West"
                                for u in units["unit_id"]]}).to_csv(d / "plan.csv", index=False)  # fmt: skip
    pd.DataFrame({"territory": ["East", "West"], "rep_id": ["r1", "r2"],
                  "rep_name": ["Ann Lee", "Bo Wu"],
                  "email": ["ann@example.com", "bo@example.com"]}).to_csv(d / "reps.csv", index=False)  # fmt: skip
    pd.DataFrame({
        "account_id": ["001A", "001B", "001C", "001D"],
        "name": ["Newport Marine", "Providence Labs", "Warwick Foods", "Bristol Boats"],
        "zip": ["02840", "02903", "02886", "02809"],
        "score": [10, 20, 30, 40], "potential": [1000, 2000, 3000, 4000],
    }).to_csv(d / "accounts.csv", index=False)  # fmt: skip
    r = run_cli("export", d / "units.parquet", d / "plan.csv", "--reps", d / "reps.csv",
                "--accounts", d / "accounts.csv", "--format", "all", "--out", d / "out")  # fmt: skip
    assert r.returncode == 0, r.stderr
    return d


def _xml(path):
    return ET.parse(path).getroot()


def test_salesforce_metadata_deploys_territories_with_zip_rules(ri):
    sf = ri / "out" / "salesforce"
    z = pd.read_csv(ri / "out" / "zip_to_rep.csv", dtype=str)
    pkg = _xml(sf / "package.xml")
    members = {t.find("m:name", NS).text: [m.text for m in t.findall("m:members", NS)]
               for t in pkg.findall("m:types", NS)}  # fmt: skip
    assert members["Territory2Model"] == ["Patchmap"]
    assert sorted(members["Territory2"]) == ["Patchmap.East", "Patchmap.West"]
    assert pkg.find("m:version", NS).text == "60.0"
    model = sf / "territory2Models" / "Patchmap"
    assert _xml(model / "Patchmap.territory2Model").find("m:name", NS).text == "Patchmap"
    for label in ("East", "West"):
        terr = _xml(model / "territories" / f"{label}.territory2")
        assert terr.find("m:name", NS).text == label
        assert terr.find("m:accountAccessLevel", NS).text == "Edit"
        typ = terr.find("m:territory2Type", NS).text
        assert (sf / "territory2Types" / f"{typ}.territory2Type").exists()
        rules = [a.find("m:ruleName", NS).text for a in terr.findall("m:ruleAssociations", NS)]
        assert {f"Patchmap.{r}" for r in rules} <= set(members["Territory2Rule"])
        zips = []
        for name in rules:
            rule = _xml(model / "rules" / f"{name}.territory2Rule")
            assert rule.find("m:objectType", NS).text == "Account"
            assert rule.find("m:active", NS).text == "true"
            items = rule.findall("m:ruleItems", NS)
            if len(items) > 1:
                assert rule.find("m:booleanFilter", NS).text == " OR ".join(
                    str(i) for i in range(1, len(items) + 1)
                )
            for item in items:
                assert item.find("m:field", NS).text == "Account.BillingPostalCode"
                assert item.find("m:operation", NS).text == "startsWith"
                value = item.find("m:value", NS).text
                assert len(value) <= 255
                zips += value.split(",")
        assert sorted(zips) == sorted(z.loc[z["territory"] == label, "zip"])  # each ZIP once


def test_salesforce_association_files_for_data_loader(ri, tmp_path):
    sf = ri / "out" / "salesforce"
    a = pd.read_csv(sf / "ObjectTerritory2Association.csv", dtype=str, keep_default_na=False)
    assert list(a.columns[:3]) == ["ObjectId", "Territory2Id", "AssociationCause"]
    assert (a["AssociationCause"] == "Territory2Manual").all()
    assert dict(zip(a["ObjectId"], a["Territory2DeveloperName"], strict=True)) == {
        "001A": "East", "001B": "West", "001C": "West", "001D": "East"}  # fmt: skip
    u = pd.read_csv(sf / "UserTerritory2Association.csv", dtype=str, keep_default_na=False)
    assert list(u.columns[:3]) == ["UserId", "Territory2Id", "RoleInTerritory2"]
    assert dict(zip(u["Email"], u["Territory2DeveloperName"], strict=True)) == {
        "ann@example.com": "East", "bo@example.com": "West"}  # fmt: skip
    # once deployed: the org's ids fill Territory2Id
    ids = tmp_path / "territory2.csv"
    pd.DataFrame({"Id": ["0MIxx01", "0MIxx02"], "DeveloperName": ["East", "West"]}).to_csv(
        ids, index=False
    )
    r = run_cli("export", ri / "units.parquet", ri / "plan.csv", "--reps", ri / "reps.csv",
                "--accounts", ri / "accounts.csv", "--format", "salesforce",
                "--salesforce-territories", ids, "--out", tmp_path / "o")  # fmt: skip
    assert r.returncode == 0, r.stderr
    a = pd.read_csv(tmp_path / "o" / "salesforce" / "ObjectTerritory2Association.csv", dtype=str)
    assert dict(zip(a["ObjectId"], a["Territory2Id"], strict=True))["001A"] == "0MIxx01"
    pd.DataFrame({"Id": ["0MIxx01"], "DeveloperName": ["East"]}).to_csv(ids, index=False)
    r = run_cli("export", ri / "units.parquet", ri / "plan.csv", "--format", "salesforce",
                "--salesforce-territories", ids, "--out", tmp_path / "o2")  # fmt: skip
    assert r.returncode == 2 and "no Territory2 with DeveloperName 'West'" in r.stderr


def test_hubspot_company_owner_import(ri):
    h = pd.read_csv(ri / "out" / "hubspot" / "companies.csv", dtype=str)
    assert list(h.columns) == ["Record ID", "Company name", "Company owner", "Sales territory"]
    assert dict(zip(h["Record ID"], h["Company owner"], strict=True)) == {
        "001A": "ann@example.com", "001B": "bo@example.com", "001C": "bo@example.com",
        "001D": "ann@example.com"}  # fmt: skip


def test_hubspot_needs_one_owner_per_company(ri, tmp_path):
    shared = tmp_path / "reps.csv"
    shared.write_text("territory,rep_id,email\nEast,r1,a@example.com\nEast,r3,c@example.com\n")
    r = run_cli("export", ri / "units.parquet", ri / "plan.csv", "--reps", shared,
                "--shared-territories", "--accounts", ri / "accounts.csv", "--format", "hubspot",
                "--out", tmp_path / "o")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rejects = pd.read_csv(tmp_path / "o" / "hubspot" / "companies.rejects.csv", dtype=str)
    assert sorted(rejects["account_id"]) == ["001A", "001B", "001C", "001D"]
    assert set(rejects["reason"]) == {
        "territory has several reps: a company has one owner",
        "territory has no rep with an email",
    }
    r = run_cli("export", ri / "units.parquet", ri / "plan.csv", "--format", "hubspot",
                "--out", tmp_path / "o2")  # fmt: skip
    assert r.returncode == 2 and "needs the accounts" in r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text('territory,rep_id,email\nEast,r1,=HYPERLINK("x")\nWest,r2,b@example.com\n')
    r = run_cli("export", ri / "units.parquet", ri / "plan.csv", "--reps", bad,
                "--out", tmp_path / "o3")  # fmt: skip
    assert r.returncode == 2 and "line 2" in r.stderr and "not an email address" in r.stderr


@pytest.mark.parametrize("fmt", ["hubspot", "all"])
def test_hubspot_without_rep_emails_is_refused_before_any_file(ri, tmp_path, fmt):
    plain = tmp_path / "reps.csv"
    plain.write_text("territory,rep_id,rep_name\nEast,r1,Ann Lee\nWest,r2,Bo Wu\n")
    out = tmp_path / "o"
    r = run_cli("export", ri / "units.parquet", ri / "plan.csv", "--reps", plain,
                "--accounts", ri / "accounts.csv", "--format", fmt, "--out", out)  # fmt: skip
    assert r.returncode == 2 and "need an email column" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert "placed" not in r.stdout, r.stdout  # refused before the accounts are placed
    assert not out.exists() or not any(out.iterdir())
    r = run_cli("export", ri / "units.parquet", ri / "plan.csv", "--accounts",
                ri / "accounts.csv", "--format", fmt, "--out", out)  # fmt: skip
    assert r.returncode == 2 and "need an email column" in r.stderr, r.stderr
    assert "placed" not in r.stdout, r.stdout
    assert not out.exists() or not any(out.iterdir())


def test_zip_to_rep_xlsx_keeps_zips_as_text(ri):
    from openpyxl import load_workbook

    ws = load_workbook(ri / "out" / "zip_to_rep.xlsx").active
    header = [c.value for c in ws[1]]
    assert header[:2] == ["zip", "zcta"]
    cells = [row[0] for row in ws.iter_rows(min_row=2)]
    assert all(c.data_type == "s" for c in cells)
    csv = pd.read_csv(ri / "out" / "zip_to_rep.csv", dtype=str)
    assert [c.value for c in cells] == csv["zip"].tolist()
    assert all(c.value.startswith("02") and len(c.value) == 5 for c in cells)


def test_postal_code_rules_split_long_lists():
    zips = [f"{i:05d}" for i in range(90000, 91000)]
    rules = postal_code_rules(zips)
    items = [v for rule in rules for v in rule]
    assert all(len(rule) <= 10 for rule in rules) and all(len(v) <= 255 for v in items)
    assert sorted(",".join(items).split(",")) == zips


def test_developer_names_are_valid_and_unique():
    names = developer_names(["T01", "North-East 1", "North East 1", "1st", "__x__"])
    assert list(names.values()) == ["T01", "North_East_1", "North_East_1_2", "T_1st", "x"]
