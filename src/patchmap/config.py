"""Plan files: one TOML file that describes a whole run, validated before anything runs."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchmap.errors import InputError

UNIT_KINDS = ("h3", "zcta", "county")
#: Keys of the [partition] and [export] tables.
PARTITION_KEYS = {
    "territories", "balance", "tolerance", "seed", "reps", "current", "max_moved", "relax",
    "locked", "within", "regions", "quota", "quota_floor", "quota_cap",
}  # fmt: skip
EXPORT_KEYS = {"capacity"}


@dataclass
class PlanConfig:
    """Everything `patchmap run` needs; paths are resolved against the config file's folder."""

    accounts: Path
    out: Path
    columns: dict[str, str] = field(default_factory=dict)
    units: str = "zcta"
    resolution: int = 7
    region: list[str] | None = None
    territories: int | None = 20
    balance: list[str] = field(default_factory=lambda: ["potential", "accounts"])
    tolerance_pct: float = 5.0
    seed: int = 0
    scoring: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    tiles: bool = False
    # what-if planning ([partition]): see `patchmap partition --help`
    reps: Path | None = None
    current: Path | None = None
    max_moved_pct: float | None = None
    relax: str = "tolerance"
    locked: Path | None = None
    within: str | None = None
    regions: int | None = None
    quota: float | None = None
    quota_floor: float | str | None = None
    quota_cap: float | str | None = None
    # [export]
    capacity: float | str | dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.units not in UNIT_KINDS:
            raise InputError(f"units: expected one of {', '.join(UNIT_KINDS)}, got {self.units!r}")
        if not 0 <= int(self.resolution) <= 15:
            raise InputError(f"resolution: expected an H3 resolution 0-15, got {self.resolution}")
        if self.territories is None and self.reps is None and self.current is None:
            self.territories = 20
        if self.territories is not None and int(self.territories) < 2:
            raise InputError(f"territories: expected at least 2, got {self.territories}")
        if self.max_moved_pct is not None:
            if self.current is None:
                raise InputError("max_moved: needs current (the plan to realign)")
            if not 0 <= float(self.max_moved_pct) <= 100:
                raise InputError(
                    f"max_moved: expected a percentage in [0, 100], got {self.max_moved_pct}"
                )
        if self.relax not in ("tolerance", "budget"):
            raise InputError(f"relax: expected tolerance or budget, got {self.relax!r}")
        if self.regions is not None and int(self.regions) < 2:
            raise InputError(f"regions: expected at least 2, got {self.regions}")
        if self.quota is not None and not float(self.quota) >= 0:
            raise InputError(f"quota: expected a non-negative amount, got {self.quota}")
        if not self.balance:
            raise InputError("balance: expected at least one column to balance")
        if not 0 <= float(self.tolerance_pct) < 100:
            raise InputError(
                f"tolerance: expected a percentage in [0, 100), got {self.tolerance_pct}"
            )


def _get(
    table: dict, key: str, kind: type | tuple[type, ...], where: str, default: Any = None
) -> Any:
    value = table.get(key, default)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if value is not None and (
        not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds)
    ):
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
    known = {"accounts", "scoring", "units", "partition", "output", "map", "export"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(
            f"{p}: unknown section [{unknown[0]}] (expected {', '.join(sorted(known))})"
        )

    acc = raw.get("accounts", {})
    acc_path = _get(acc, "path", str, f"{p} [accounts]")
    if not acc_path:
        raise InputError(f"{p}: [accounts] path is required")
    units = raw.get("units", {})
    part = raw.get("partition", {})
    output = raw.get("output", {})
    map_section = raw.get("map", {})
    export = raw.get("export", {})
    for name, table, keys in (("partition", part, PARTITION_KEYS), ("export", export, EXPORT_KEYS)):
        extra = sorted(set(table) - keys)
        if extra:
            raise InputError(
                f"{p}: [{name}] unknown key {extra[0]!r} (expected {', '.join(sorted(keys))})"
            )
    region = _get(units, "region", (str, list), f"{p} [units]")
    balance = _get(part, "balance", (str, list), f"{p} [partition]", ["potential", "accounts"])
    where = f"{p} [partition]"

    def path(key: str) -> Path | None:
        value = _get(part, key, str, where)
        return base / value if value else None

    max_moved = _get(part, "max_moved", (int, float), where)
    quota = _get(part, "quota", (int, float), where)
    capacity = _get(export, "capacity", (int, float, str, dict), f"{p} [export]")
    return PlanConfig(
        accounts=(base / acc_path),
        out=base / _get(output, "dir", str, f"{p} [output]", "out"),
        columns=dict(_get(acc, "columns", dict, f"{p} [accounts]", {})),
        units=_get(units, "kind", str, f"{p} [units]", "zcta"),
        resolution=_get(units, "resolution", int, f"{p} [units]", 7),
        region=[region] if isinstance(region, str) else region,
        territories=_get(part, "territories", int, where),
        balance=[b.strip() for b in balance.split(",")]
        if isinstance(balance, str)
        else list(balance),
        tolerance_pct=float(_get(part, "tolerance", (int, float), f"{p} [partition]", 5.0)),
        seed=_get(part, "seed", int, f"{p} [partition]", 0),
        scoring=dict(raw.get("scoring", {})),
        title=_get(map_section, "title", str, f"{p} [map]"),
        tiles=_get(map_section, "tiles", bool, f"{p} [map]", False),
        reps=path("reps"),
        current=path("current"),
        max_moved_pct=float(max_moved) if max_moved is not None else None,
        relax=_get(part, "relax", str, where, "tolerance"),
        locked=path("locked"),
        within=_get(part, "within", str, where),
        regions=_get(part, "regions", int, where),
        quota=float(quota) if quota is not None else None,
        quota_floor=_get(part, "quota_floor", (int, float, str), where),
        quota_cap=_get(part, "quota_cap", (int, float, str), where),
        capacity=dict(capacity) if isinstance(capacity, dict) else capacity,
    )
