"""The set-partitioning bound (patchmap.certify.columns) alone on the county instances.

Column generation with HiGHS pricing, one thread, ``--time-limit`` seconds per state,
seeded with the engine's plan (``patchmap partition ... --adjacency``, seed 0). Prints
the bound, the restricted master's value (an upper bound on the set-partitioning LP: a
value below ``optimum - 1`` means the LP alone cannot prove that optimum) and how many
exact pricings finished. Measured (60 s, load 7-9 on 2 cores): NM proven in 1.5 s;
ME 15/16 (its LP is 15); AR 27-29/33, MS 28/34, IA 28/33 (the labelling model: 16-23,
15-20, 16-21 at similar loads); AL 32-34/55 (master 53.04: the LP is below 54); LA no
exact pricing finished within 60 s; every exact pricing took 5-60 s. With the local
search, the smoothing and the early stop of the exact pricing (load 3-4): AR 30-32,
MS 29-30 (master 32.92-33.00: its LP cannot prove 34), IA 31-32; none proven in 60 s.

    python benchmarks/colgen.py [--states LA,AR] [--time-limit 60] [--trace]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import optimal
import pandas as pd

from patchmap.certify.columns import column_bound
from patchmap.certify.model import Instance


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", help="comma-separated states (default: all twelve)")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--data", type=Path, default=optimal.DATA)
    ap.add_argument("--trace", action="store_true", help="print the bound after each pricing")
    args = ap.parse_args(argv)
    states = args.states.split(",") if args.states else None
    print("| state | k | optimum | plan cut | bound | master LP | exact pricings | s |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for case in optimal.load_optimal(states, args.data):
        plan = optimal.run_patchmap(case, ())
        ids = pd.Index(case.units["unit_id"].astype(str))
        a = ids.get_indexer(case.edges["unit_a"].astype(str))
        b = ids.get_indexer(case.edges["unit_b"].astype(str))
        codes, _ = pd.factorize(pd.Series(plan.labels).astype(str))
        pop = case.units["population"].to_numpy(dtype=float)
        inst = Instance.from_bands(a, b, pop, shares=np.ones(case.k), tolerances=[0.005])
        incumbent = codes if plan.feasible else None
        res = column_bound(inst, time_limit=args.time_limit, incumbent=incumbent)
        above = res.lower_bound is not None and res.lower_bound > case.optimum
        print(
            f"| {case.name} | {case.k} | {case.optimum} | {plan.cut} | "
            f"{'-' if res.lower_bound is None else res.lower_bound}{' ABOVE' if above else ''} | "
            f"{'-' if res.lp is None else f'{res.lp:.2f}'} | {len(res.history)} | "
            f"{res.seconds:.1f} |",
            flush=True,
        )
        if args.trace:
            print("  ", " ".join(f"{t:.1f}s:{v:.2f}" for t, v in res.history), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
