"""CRM-shaped exports: Salesforce territories and assignment rules, a HubSpot owner import,
and an Excel ZIP table whose ZIPs stay text.

Salesforce Enterprise Territory Management takes territories and their assignment rules as
metadata (a folder ``sf project deploy start --metadata-dir`` deploys: one
``Territory2Model`` in Planning state, a ``Territory2Type``, one ``Territory2`` per
territory, ``Territory2Rule`` s matching ``Account.BillingPostalCode``) and the
account-to-territory and user-to-territory links as data (Data Loader inserts of
``ObjectTerritory2Association`` and ``UserTerritory2Association``, whose ids the org
assigns). HubSpot updates company owners from an import file keyed on the Record ID with
the owner's email in "Company owner".
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

from patchmap.errors import InputError
from patchmap.io import TEMP_MARK, atomic_path, read_table, remove_output, write_csv, write_text
from patchmap.logs import log

__all__ = [
    "FORMATS",
    "SALESFORCE_API_VERSION",
    "SEGMENT_FIELD",
    "developer_names",
    "hubspot_companies",
    "postal_code_rules",
    "territory_ids",
    "write_hubspot",
    "write_hubspot_segments",
    "write_salesforce",
    "write_salesforce_segments",
    "write_xlsx",
]

FORMATS = ("csv", "salesforce", "hubspot", "all")
SALESFORCE_API_VERSION = "60.0"
#: Rule item values are kept within this many characters (a comma-separated ZIP list),
#: and a rule holds at most this many items (ORed by its boolean filter).
RULE_VALUE_CHARS = 255
RULE_ITEMS = 10
#: The Account field a segmented model's rules match the segment name on.
SEGMENT_FIELD = "Account.Segment__c"
_NS = "http://soap.sforce.com/2006/04/metadata"
_MAX_LISTED = 5


# ---------------------------------------------------------------------------------------------
# Excel


def write_xlsx(df: pd.DataFrame, path: str | os.PathLike, *, sheet: str = "Sheet1") -> Path:
    """Write a table to .xlsx atomically: text stays text (ZIPs keep their leading zeros,
    a cell starting with ``=`` is never a formula), numbers stay numbers."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet[:31])
    text = [not pd.api.types.is_numeric_dtype(df[c]) or df[c].dtype == bool for c in df]

    def cell(value, as_text: bool) -> WriteOnlyCell:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return WriteOnlyCell(ws, value=None)
        if as_text:
            c = WriteOnlyCell(ws, value=str(value))
            c.data_type = "s"
            c.number_format = "@"
            return c
        return WriteOnlyCell(ws, value=value.item() if hasattr(value, "item") else value)

    ws.append([cell(str(c), True) for c in df.columns])
    for row in df.itertuples(index=False):
        ws.append([cell(v, t) for v, t in zip(row, text, strict=True)])
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Salesforce


def developer_names(labels: Sequence[str], *, prefix: str = "T") -> dict[str, str]:
    """A Salesforce API name per label: letters, digits and single underscores, starting
    with a letter, at most 80 characters, unique."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for label in labels:
        name = re.sub(r"[^A-Za-z0-9]+", "_", str(label)).strip("_")
        if not name or not name[0].isalpha():
            name = f"{prefix}_{name}".rstrip("_")
        name = name[:80].rstrip("_")
        base, n = name, 2
        while name.lower() in used:
            suffix = f"_{n}"
            name, n = base[: 80 - len(suffix)] + suffix, n + 1
        used.add(name.lower())
        out[str(label)] = name
    return out


def postal_code_rules(
    zips: Sequence[str], *, value_chars: int = RULE_VALUE_CHARS, items: int = RULE_ITEMS
) -> list[list[str]]:
    """A territory's ZIPs as rules of rule items: each item a comma-separated list of at most
    ``value_chars`` characters, each rule at most ``items`` items."""
    values: list[str] = []
    current = ""
    for z in sorted(set(map(str, zips))):
        joined = f"{current},{z}" if current else z
        if len(joined) > value_chars and current:
            values.append(current)
            joined = z
        current = joined
    if current:
        values.append(current)
    return [values[i : i + items] for i in range(0, len(values), items)]


def _xml(root: str, body: list[tuple[str, str | list]]) -> str:
    """A metadata file: ``<root>`` with child elements in the order given."""

    def render(items: list[tuple[str, str | list]], depth: int) -> list[str]:
        pad = "    " * depth
        lines = []
        for tag, value in items:
            if isinstance(value, list):
                lines += [f"{pad}<{tag}>", *render(value, depth + 1), f"{pad}</{tag}>"]
            else:
                lines.append(f"{pad}<{tag}>{escape(str(value))}</{tag}>")
        return lines

    return "\n".join(
        ['<?xml version="1.0" encoding="UTF-8"?>', f'<{root} xmlns="{_NS}">', *render(body, 1),
         f"</{root}>", ""]
    )  # fmt: skip


def territory_ids(path: str | os.PathLike, labels: Sequence[str]) -> dict[str, str]:
    """Territory2 ids by territory label, from an export of the deployed model
    (``Id``, ``DeveloperName``); every territory must be there."""
    names = developer_names(labels)
    t = read_table(path, dtype=str)
    cols = {c.lower(): c for c in t.columns}
    if "id" not in cols or "developername" not in cols:
        raise InputError(
            f"{path}: expected columns Id and DeveloperName (an export of Territory2, e.g. "
            "SELECT Id, DeveloperName FROM Territory2 WHERE Territory2Model.DeveloperName = ...)"
        )
    ids = dict(zip(t[cols["developername"]].str.strip(), t[cols["id"]].str.strip(), strict=True))
    missing = [d for d in names.values() if d not in ids]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:_MAX_LISTED])
        raise InputError(
            f"{path}: no Territory2 with DeveloperName {shown} (deploy the model first)"
        )
    return {label: ids[dev] for label, dev in names.items()}


def write_salesforce(
    out_dir: str | os.PathLike,
    zips: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    accounts: pd.DataFrame | None = None,
    reps: pd.DataFrame | None = None,
    model: str = "Patchmap",
    ids: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Write ``out_dir/salesforce``: the territory model as deployable metadata and the
    association files for Data Loader.

    ``zips`` is the ZIP-to-rep table (``zip, territory``), ``summary`` the per-territory
    summary (``territory`` and, when known, ``rep_id``), ``accounts`` the placed accounts
    (``account_id, territory``) and ``reps`` one row per rep (``rep_id, territory`` and
    ``email`` or ``user_id``). ``ids`` (:func:`territory_ids`, by label) fills the
    association files' ``Territory2Id``. Returns ``{name: path}``.
    """
    base = Path(out_dir) / "salesforce"
    labels = summary["territory"].astype(str).tolist()
    model_dev = developer_names([model], prefix="M")[model]
    type_dev = "Patchmap_Territory"
    dev = developer_names(labels)
    ids = ids or {}
    written: dict[str, Path] = {}
    folder = base / "territory2Models" / model_dev

    written["sf_type"] = write_text(
        _xml("Territory2Type", [
            ("description", "Sales territory drawn by patchmap"),
            ("name", "Sales territory"),
            ("priority", "1"),
        ]),
        base / "territory2Types" / f"{type_dev}.territory2Type",
    )  # fmt: skip
    written["sf_model"] = write_text(
        _xml("Territory2Model", [
            ("description", f"{len(labels)} territories drawn by patchmap"),
            ("name", model),
        ]),
        folder / f"{model_dev}.territory2Model",
    )  # fmt: skip
    by_terr = zips.groupby(zips["territory"].astype(str))["zip"].agg(list)
    rule_names: list[str] = []
    rep_of = summary.set_index(summary["territory"].astype(str)).get("rep_id")
    for label in labels:
        rep = rep_of.get(label) if rep_of is not None else None
        rule_names += _write_territory(
            folder, dev[label], label, by_terr.get(label, []), rep=rep, type_dev=type_dev
        )
    written["sf_package"] = write_text(
        _package(model_dev, type_dev, dev, rule_names), base / "package.xml"
    )
    keep = {f"{r}.territory2Rule" for r in rule_names} | {f"{d}.territory2" for d in dev.values()}
    for sub in ("rules", "territories"):  # a rerun with fewer territories leaves no stale file
        for stale in (folder / sub).glob("*"):
            if stale.name not in keep and TEMP_MARK not in stale.name:
                remove_output(stale)

    if not ids:
        log.info(
            "salesforce: Territory2Id is blank in the association files until the model is "
            "deployed: export its territories (Id, DeveloperName) and export again with "
            "that file as the Salesforce territories file"
        )
    if accounts is not None and len(accounts):
        acc = accounts[accounts["territory"].notna()]
        t = acc["territory"].astype(str)
        assoc = pd.DataFrame({
            "ObjectId": acc["account_id"].astype(str).to_numpy(),
            "Territory2Id": t.map(ids).to_numpy() if ids else "",
            "AssociationCause": "Territory2Manual",
            "Territory2DeveloperName": t.map(dev).to_numpy(),
        })  # fmt: skip
        if "name" in acc.columns:
            assoc["AccountName"] = acc["name"].to_numpy()
        written["sf_accounts"] = write_csv(assoc, base / "ObjectTerritory2Association.csv")
    if reps is not None and len(reps):
        r = reps[reps["territory"].notna()]
        t = r["territory"].astype(str)
        users = pd.DataFrame({
            "UserId": r["user_id"].to_numpy() if "user_id" in r.columns else "",
            "Territory2Id": t.map(ids).to_numpy() if ids else "",
            "RoleInTerritory2": "",
            "Territory2DeveloperName": t.map(dev).to_numpy(),
            "rep_id": r["rep_id"].to_numpy(),
            "Email": r["email"].to_numpy() if "email" in r.columns else "",
        })  # fmt: skip
        written["sf_users"] = write_csv(users, base / "UserTerritory2Association.csv")
    return written


def write_salesforce_segments(
    out_dir: str | os.PathLike,
    zips: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    accounts: pd.DataFrame | None = None,
    model: str = "Patchmap",
    segment_field: str = SEGMENT_FIELD,
) -> dict[str, Path]:
    """:func:`write_salesforce` for a plan by segment: the segment is the territory type
    and the top level of the hierarchy.

    Every segment gets a ``Territory2Type`` (priority in the segments' order) and a parent
    ``Territory2``; its territories are children (``parentTerritory``) of that type, named
    ``<segment>_<territory>`` so equal labels in two segments stay apart. A geographic
    territory's rules match ``Account.BillingPostalCode`` AND ``segment_field`` equals
    the segment's name (the field the user maps the segment to); a national segment's
    territories have no rules (their accounts come by association). ``zips`` has
    ``zip, segment, territory``; ``summary`` one row per ``segment, territory`` (and
    ``rep_id``, ``rep_email`` when known); ``accounts`` ``account_id, segment,
    territory``. The association files carry ``Territory2DeveloperName`` (ids once
    deployed) and, for users, the rep's ``Email``. Returns ``{name: path}``.
    """
    base = Path(out_dir) / "salesforce"
    model_dev = developer_names([model], prefix="M")[model]
    folder = base / "territory2Models" / model_dev
    segs = list(dict.fromkeys(summary["segment"].astype(str)))
    seg_dev = developer_names(segs, prefix="S")
    type_of = {g: f"Patchmap_{seg_dev[g]}"[:80] for g in segs}
    key = summary["segment"].astype(str) + "\x1f" + summary["territory"].astype(str)
    child = developer_names([f"{g}_{t}" for g, t in zip(summary["segment"].astype(str),
                             summary["territory"].astype(str), strict=True)])  # fmt: skip
    dev = dict(zip(key, child.values(), strict=True))
    parent_dev = {g: f"{seg_dev[g]}_segment"[:80] for g in segs}
    written: dict[str, Path] = {}
    for i, g in enumerate(segs, start=1):
        write_text(
            _xml("Territory2Type", [
                ("description", f"Segment {g}: territories drawn by patchmap"),
                ("name", f"Segment {g}"[:80]),
                ("priority", str(i)),
            ]),
            base / "territory2Types" / f"{type_of[g]}.territory2Type",
        )  # fmt: skip
    written["sf_model"] = write_text(
        _xml("Territory2Model", [
            ("description", f"{len(summary)} territories in {len(segs)} segments, drawn by patchmap"),
            ("name", model),
        ]),
        folder / f"{model_dev}.territory2Model",
    )  # fmt: skip
    for g in segs:
        write_text(
            _xml("Territory2", [
                ("accountAccessLevel", "Edit"),
                ("description", f"patchmap segment {g}"),
                ("name", g),
                ("territory2Type", type_of[g]),
            ]),
            folder / "territories" / f"{parent_dev[g]}.territory2",
        )  # fmt: skip
    zkey = zips["segment"].astype(str) + "\x1f" + zips["territory"].astype(str)
    by_terr = zips["zip"].groupby(zkey.to_numpy()).agg(list)
    rule_names: list[str] = []
    rep_of = summary["rep_id"].to_numpy() if "rep_id" in summary.columns else [None] * len(key)
    for k_, g, label, rep in zip(key, summary["segment"].astype(str),
                                 summary["territory"].astype(str), rep_of, strict=True):  # fmt: skip
        rule_names += _write_territory(
            folder, dev[k_], label, by_terr.get(k_, []), rep=rep, type_dev=type_of[g],
            segment=(g, segment_field), parent=parent_dev[g],
        )  # fmt: skip
    all_dev = {**{f"segment {g}": parent_dev[g] for g in segs}, **dev}
    written["sf_package"] = write_text(
        _package(model_dev, sorted(type_of.values()), all_dev, rule_names), base / "package.xml"
    )
    keep = {f"{r}.territory2Rule" for r in rule_names} | {
        f"{d}.territory2" for d in all_dev.values()
    }
    for sub in ("rules", "territories"):  # a rerun with fewer territories leaves no stale file
        for stale in (folder / sub).glob("*"):
            if stale.name not in keep and TEMP_MARK not in stale.name:
                remove_output(stale)
    kept_types = {f"{t}.territory2Type" for t in type_of.values()}
    for stale in (base / "territory2Types").glob("*"):
        if stale.name not in kept_types and TEMP_MARK not in stale.name:
            remove_output(stale)
    if accounts is not None and len(accounts):
        acc = accounts[accounts["territory"].notna()]
        k_acc = acc["segment"].astype(str) + "\x1f" + acc["territory"].astype(str)
        assoc = pd.DataFrame({
            "ObjectId": acc["account_id"].astype(str).to_numpy(),
            "Territory2Id": "",
            "AssociationCause": "Territory2Manual",
            "Territory2DeveloperName": k_acc.map(dev).to_numpy(),
            "Segment": acc["segment"].astype(str).to_numpy(),
        })  # fmt: skip
        if "name" in acc.columns:
            assoc["AccountName"] = acc["name"].to_numpy()
        written["sf_accounts"] = write_csv(assoc, base / "ObjectTerritory2Association.csv")
    if "rep_id" in summary.columns:
        has = summary["rep_id"].notna().to_numpy()
        rows = summary[has]
        users = pd.DataFrame({
            "UserId": "",
            "Territory2Id": "",
            "RoleInTerritory2": "",
            "Territory2DeveloperName": key[has].map(dev).to_numpy(),
            "Segment": rows["segment"].astype(str).to_numpy(),
            "rep_id": rows["rep_id"].to_numpy(),
            "Email": rows["rep_email"].to_numpy() if "rep_email" in rows.columns else "",
        })  # fmt: skip
        written["sf_users"] = write_csv(users, base / "UserTerritory2Association.csv")
    return written


def _write_territory(
    folder: Path,
    dev: str,
    label: str,
    zips: Sequence[str],
    *,
    rep: object,
    type_dev: str,
    segment: tuple[str, str] | None = None,
    parent: str | None = None,
) -> list[str]:
    """Write one Territory2 and its postal-code Territory2Rules; return the rules' names.

    With ``segment`` (name, account field) every rule also requires the account's segment
    field to equal the name (one of the rule's items, so one ZIP list fewer per rule), the
    territory sits under ``parent`` and its description names the segment.
    """
    seg, seg_field = segment if segment is not None else (None, None)
    rules = postal_code_rules(zips, items=RULE_ITEMS - (seg is not None))
    names = []
    for i, items in enumerate(rules, start=1):
        rule = f"{dev}_ZIP" + (f"_{i}" if len(rules) > 1 else "")
        names.append(rule)
        zip_items = " OR ".join(str(j) for j in range(1, len(items) + 1))
        body: list[tuple[str, str | list]] = [("active", "true")]
        if seg is not None:
            body.append(("booleanFilter", f"({zip_items}) AND {len(items) + 1}"))
        elif len(items) > 1:
            body.append(("booleanFilter", zip_items))
        of = f" ({i} of {len(rules)})" if len(rules) > 1 else ""
        body += [("name", f"{seg} {label} ZIP codes{of}" if seg is not None else f"{label} ZIP codes{of}"),
                 ("objectType", "Account")]  # fmt: skip
        body += [
            ("ruleItems", [("field", "Account.BillingPostalCode"), ("operation", "startsWith"),
                           ("value", value)])
            for value in items
        ]  # fmt: skip
        if seg is not None:
            body.append(
                ("ruleItems", [("field", seg_field), ("operation", "equals"), ("value", seg)])
            )
        write_text(_xml("Territory2Rule", body), folder / "rules" / f"{rule}.territory2Rule")
    desc = f"patchmap territory {label}" + (f" of segment {seg}" if seg is not None else "")
    desc += f", rep {rep}" if isinstance(rep, str) and rep else ""
    write_text(
        _xml("Territory2", [
            ("accountAccessLevel", "Edit"),
            ("description", desc),
            ("name", label),
            *([("parentTerritory", parent)] if parent is not None else []),
            *[("ruleAssociations", [("inherited", "false"), ("ruleName", n)]) for n in names],
            ("territory2Type", type_dev),
        ]),
        folder / "territories" / f"{dev}.territory2",
    )  # fmt: skip
    return names


def _package(model: str, type_dev: str | list[str], dev: dict[str, str], rules: list[str]) -> str:
    types = [
        ("Territory2", [f"{model}.{d}" for d in dev.values()]),
        ("Territory2Model", [model]),
        ("Territory2Rule", [f"{model}.{r}" for r in rules]),
        ("Territory2Type", [type_dev] if isinstance(type_dev, str) else type_dev),
    ]
    body: list[tuple[str, str | list]] = [
        ("types", [*[("members", m) for m in members], ("name", name)]) for name, members in types
    ]
    return _xml("Package", [*body, ("version", SALESFORCE_API_VERSION)])


# ---------------------------------------------------------------------------------------------
# HubSpot


def hubspot_companies(accounts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The company-owner import and its rejects.

    ``accounts`` are the placed accounts with ``account_id, territory`` and the territory's
    ``rep_email`` (and ``name``, ``domain``/``website`` when known). An account whose
    territory has no rep email, or several reps (a company has one owner), is rejected with
    the reason instead.
    """
    if "rep_email" not in accounts.columns:
        raise InputError(
            "hubspot: the reps need an email column (the HubSpot owner), e.g. "
            "territory,rep_id,rep_name,email"
        )
    email = accounts["rep_email"].astype("string").str.strip()
    several = email.str.contains(";", na=False)
    missing = email.isna() | (email == "")
    out = pd.DataFrame({"Record ID": accounts["account_id"].astype(str).to_numpy()})
    if "name" in accounts.columns:
        out["Company name"] = accounts["name"].to_numpy()
    domain = next((c for c in ("domain", "website") if c in accounts.columns), None)
    if domain:
        out["Company Domain Name"] = accounts[domain].to_numpy()
    out["Company owner"] = email.to_numpy()
    out["Sales territory"] = accounts["territory"].astype(str).to_numpy()
    bad = (several | missing).to_numpy()
    reason = np.where(several.to_numpy(), "territory has several reps: a company has one owner",
                      "territory has no rep with an email")  # fmt: skip
    rejects = pd.DataFrame(
        {"account_id": out["Record ID"][bad].to_numpy(),
         "territory": out["Sales territory"][bad].to_numpy(), "reason": reason[bad]}
    )  # fmt: skip
    return out[~bad].reset_index(drop=True), rejects


def write_hubspot(out_dir: str | os.PathLike, accounts: pd.DataFrame) -> dict[str, Path]:
    """``out_dir/hubspot/companies.csv`` (and ``companies.rejects.csv`` for accounts that
    cannot get an owner)."""
    base = Path(out_dir) / "hubspot"
    rows, rejects = hubspot_companies(accounts)
    written = {"hubspot_companies": write_csv(rows, base / "companies.csv")}
    if len(rejects):
        written["hubspot_rejects"] = write_csv(rejects, base / "companies.rejects.csv")
    return written


def write_hubspot_segments(
    out_dir: str | os.PathLike, accounts: pd.DataFrame, overlays: Sequence[str] = ()
) -> dict[str, Path]:
    """HubSpot imports for a plan by segment: ``hubspot/companies.csv`` sets each
    company's owner from its segment below the overlays (one owner per company) and
    carries the segment in "Sales segment"; each overlay segment gets
    ``hubspot/companies_<segment>.csv`` with its owner in "Overlay owner" (map it to a
    HubSpot user property of your own). ``accounts`` is ``assignments.csv``'s table
    (``account_id, segment, territory, rep_email``); rejects as :func:`hubspot_companies`.
    """
    base = Path(out_dir) / "hubspot"
    seg = accounts["segment"].astype(str)
    over = seg.isin(list(overlays)).to_numpy()
    below = accounts[~over]
    rows, rejects = hubspot_companies(below)
    ok = ~_unowned(below)
    rows.insert(len(rows.columns) - 1, "Sales segment", seg[~over].to_numpy()[ok])
    written = {"hubspot_companies": write_csv(rows, base / "companies.csv")}
    all_rejects = [rejects.assign(segment=_segment_of(accounts[~over], rejects))]
    names = developer_names(list(overlays), prefix="S")
    for g in overlays:
        part = accounts[(seg == g).to_numpy()]
        if not len(part):
            continue
        r, rj = hubspot_companies(part)
        r = r.rename(columns={"Company owner": "Overlay owner"})
        r.insert(len(r.columns) - 1, "Sales segment", g)
        written[f"hubspot_{names[g].lower()}"] = write_csv(
            r, base / f"companies_{names[g].lower()}.csv"
        )
        all_rejects.append(rj.assign(segment=g))
    rej = pd.concat(all_rejects, ignore_index=True)
    if len(rej):
        written["hubspot_rejects"] = write_csv(rej, base / "companies.rejects.csv")
    return written


def _unowned(accounts: pd.DataFrame) -> np.ndarray:
    """Rows :func:`hubspot_companies` rejects: no rep email, or several."""
    email = accounts["rep_email"].astype("string").str.strip()
    return (email.str.contains(";", na=False) | email.isna() | (email == "")).to_numpy()


def _segment_of(accounts: pd.DataFrame, rejects: pd.DataFrame) -> np.ndarray:
    """The segment of each rejected account (its row in ``accounts``)."""
    return accounts["segment"].astype(str).to_numpy()[_unowned(accounts)]
