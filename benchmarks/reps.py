"""Rep home bases benchmark: California ZCTAs, 20 reps with homes drawn by population.

For each seed, 20 rep homes are drawn at random in proportion to ZCTA population (so
several reps often share a metro; draws with two reps in one ZCTA are redrawn), and
``Partitioner(20, 'population', seed=0).fit(units, reps=reps)`` grows one territory per
rep. Prints seed, max deviation, contiguity, whether every home is in its rep's territory,
cut-edge fraction and seconds, and writes the ``## Rep home bases`` section of
``BENCHMARKS.md``.

    python benchmarks/reps.py [--seeds 8] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _report import machine, write_section

from patchmap import geodata, metrics
from patchmap.partition import Partitioner
from patchmap.units import build_adjacency

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Rep home bases"
K, GOAL = 20, 0.02


def draw_reps(units: pd.DataFrame, seed: int, k: int = K) -> tuple[pd.DataFrame, np.ndarray]:
    """k reps living in ZCTAs drawn in proportion to population (one rep per ZCTA)."""
    w = units["population"].to_numpy(dtype=float)
    pts = units.geometry.representative_point()
    rng = np.random.default_rng(seed)
    while True:
        idx = rng.choice(len(units), size=k, p=w / w.sum())
        if len(set(idx.tolist())) == k:
            break
    reps = pd.DataFrame({
        "rep_id": [f"r{i:02d}" for i in range(k)],
        "lat": pts.y.to_numpy()[idx], "lon": pts.x.to_numpy()[idx],
    })  # fmt: skip
    return reps, idx


def judge(units: pd.DataFrame, adj, plan, reps: pd.DataFrame, idx: np.ndarray) -> dict:
    """Max deviation, contiguity and homes, measured independently of the engine."""
    lab = plan.assignment.reindex(units["unit_id"]).to_numpy()
    tot = pd.Series(units["population"].to_numpy(dtype=float)).groupby(lab).sum()
    return {
        "max_dev": float((tot / tot.mean() - 1).abs().max()),
        "contiguous": bool(metrics.is_contiguous(adj, lab).all()),
        "homes": bool((lab[idx] == reps["rep_id"].to_numpy()).all()),
        "cut": metrics.cut_edge_fraction(adj, lab),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8, help="rep draws (seeds 0..N-1)")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)

    ca = geodata.zcta_polygons(["CA"]).rename(columns={"zcta": "unit_id"})
    adj = build_adjacency(ca, id_col="unit_id")
    rows = []
    print("seed | max dev % | contiguous | homes respected | cut-edge frac | seconds")
    for seed in range(args.seeds):
        reps, idx = draw_reps(ca, seed)
        t = time.perf_counter()
        plan = Partitioner(K, "population", seed=0).fit(ca, adjacency=adj, reps=reps)
        r = judge(ca, adj, plan, reps, idx) | {"seed": seed, "s": time.perf_counter() - t}
        rows.append(r)
        print(f"{seed} | {100 * r['max_dev']:.2f} | {r['contiguous']} | {r['homes']} | "
              f"{r['cut']:.3f} | {r['s']:.2f}", flush=True)  # fmt: skip
    write_section(Path(args.out), SECTION, render(rows))
    return 0


def render(rows: list[dict]) -> str:
    """The ``## Rep home bases`` section of BENCHMARKS.md (markdown)."""
    shown = " ".join(["python benchmarks/reps.py",
                      *[a for a in sys.argv[1:] if not os.path.isabs(a)]])  # fmt: skip
    met = [r for r in rows if r["max_dev"] <= GOAL and r["contiguous"] and r["homes"]]
    yn = {True: "yes", False: "no"}
    return "\n".join([
        SECTION,
        "",
        f"California ZCTAs (1,769 units), {K} reps whose homes are drawn at random in "
        "proportion to ZCTA population (several reps often live in the same metro; draws "
        "with two reps in one ZCTA are redrawn); `Partitioner(20, 'population', seed=0)"
        ".fit(units, reps=reps)`. Target: max deviation <= 2%, every territory contiguous, "
        "each home in its rep's territory.",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine(libs=['patchmap', 'scipy'])}",
        f"- command: `{shown}`",
        "- measured independently of the engine: max dev = largest |territory total / mean - 1|",
        "",
        "| seed | max dev % | contiguous | homes respected | cut-edge frac | seconds |",
        "|---:|---:|---|---|---:|---:|",
        *[
            f"| {r['seed']} | {100 * r['max_dev']:.2f} | {yn[r['contiguous']]} | "
            f"{yn[r['homes']]} | {r['cut']:.3f} | {r['s']:.2f} |"
            for r in rows
        ],
        "",
        f"- target met in {len(met)} of {len(rows)} draws",
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
