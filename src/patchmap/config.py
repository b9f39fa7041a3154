"""Plan files: one TOML file that describes a whole run, validated before anything runs."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchmap.errors import InputError

UNIT_KINDS = ("h3", "zcta", "county")


@dataclass
class PlanConfig:
    """Everything `patchmap run` needs; paths are resolved against the config file's folder."""

    accounts: Path
    out: Path
    columns: dict[str, str] = field(default_factory=dict)
    units: str = "zcta"
    resolution: int = 7
    region: list[str] | None = None
    territories: int = 20
    balance: list[str] = field(default_factory=lambda: ["potential", "accounts"])
    tolerance_pct: float = 5.0
    seed: int = 0
    scoring: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    tiles: bool = True

    def __post_init__(self) -> None:
        if self.units not in UNIT_KINDS:
            raise InputError(f"units: expected one of {', '.join(UNIT_KINDS)}, got {self.units!r}")
        if not 0 <= int(self.resolution) <= 15:
            raise InputError(f"resolution: expected an H3 resolution 0-15, got {self.resolution}")
        if int(self.territories) < 2:
            raise InputError(f"territories: expected at least 2, got {self.territories}")
        if not self.balance:
            raise InputError("balance: expected at least one column to balance")
        if not 0 <= float(self.tolerance_pct) < 100:
            raise InputError(f"tolerance: expected a percentage in [0, 100), got {self.tolerance_pct}")


def _get(table: dict, key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    value = table.get(key, default)
    if value is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{where}: [{key}] expected {names}, got {type(value).__name__} {value!r}")
    return value


def load_config(path: str | os.PathLike) -> PlanConfig:
    """Read a plan TOML file (see examples/plan.toml)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not valid TOML ({exc})") from None
    base = p.resolve().parent
    known = {"accounts", "scoring", "units", "partition", "output", "map"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(f"{p}: unknown section [{unknown[0]}] (expected {', '.join(sorted(known))})")

    acc = raw.get("accounts", {})
    acc_path = _get(acc, "path", str, f"{p} [accounts]")
    if not acc_path:
        raise InputError(f"{p}: [accounts] path is required")
    units = raw.get("units", {})
    part = raw.get("partition", {})
    output = raw.get("output", {})
    map_section = raw.get("map", {})
    region = _get(units, "region", (str, list), f"{p} [units]")
    balance = _get(part, "balance", (str, list), f"{p} [partition]", ["potential", "accounts"])
    return PlanConfig(
        accounts=(base / acc_path),
        out=base / _get(output, "dir", str, f"{p} [output]", "out"),
        columns=dict(_get(acc, "columns", dict, f"{p} [accounts]", {})),
        units=_get(units, "kind", str, f"{p} [units]", "zcta"),
        resolution=_get(units, "resolution", int, f"{p} [units]", 7),
        region=[region] if isinstance(region, str) else region,
        territories=_get(part, "territories", int, f"{p} [partition]", 20),
        balance=[b.strip() for b in balance.split(",")] if isinstance(balance, str) else list(balance),
        tolerance_pct=float(_get(part, "tolerance", (int, float), f"{p} [partition]", 5.0)),
        seed=_get(part, "seed", int, f"{p} [partition]", 0),
        scoring=dict(raw.get("scoring", {})),
        title=_get(map_section, "title", str, f"{p} [map]"),
        tiles=_get(map_section, "tiles", bool, f"{p} [map]", True),
    )
