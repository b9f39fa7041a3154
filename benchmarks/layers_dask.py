"""Layers on Dask: 20 million accounts aggregated within 4 GB on a local cluster.

Generates a partitioned Parquet dataset in a temporary directory (``--files`` files of
``--rows`` accounts each; :func:`patchmap.sample.sample_accounts` over a state, one file per
subprocess call, ids made unique, row groups of 100k rows), never holding more than one
file's rows in memory. Then, per unit kind, runs :func:`patchmap.distributed.build_layers_dask`
with its default local cluster (one single-threaded worker process per core, memory limits
adding up to less than 4 GB), sampling every 0.1 s the resident memory of this process
(client and scheduler) and all its children (nannies and workers), summed. Prints a table
and, unless ``--no-md``, writes the ``## Layers on Dask`` section of BENCHMARKS.md
(that section only; the others are left as they are).

    python benchmarks/layers_dask.py                           # 40 x 500k = 20M accounts
    python benchmarks/layers_dask.py --files 4 --rows 50000 --no-md
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _report import machine, write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Layers on Dask"
BUDGET_GIB = 4.0
ROW_GROUP = 100_000
LIBS = ("dask", "distributed", "pandas", "pyarrow", "scikit-learn")


# ---------------------------------------------------------------- data


def write_chunk(args: tuple[Path, int, int, int, str]) -> int:
    """One Parquet file of ``rows`` synthetic accounts, ids ``A{first + 1:09d}`` onwards."""
    import numpy as np
    import pandas as pd

    from patchmap.sample import sample_accounts

    path, first, rows, seed, region = args
    df = sample_accounts(region, n=rows, seed=seed, bad_share=0.001)
    df["account_id"] = "A" + pd.Series(np.arange(first + 1, first + rows + 1)).astype(
        str
    ).str.zfill(9)
    tmp = path.with_suffix(".tmp")
    df.to_parquet(tmp, index=False, row_group_size=ROW_GROUP, compression="zstd")
    tmp.rename(path)
    return rows


def make_dataset(directory: Path, files: int, rows: int, region: str, seed: int) -> Path:
    """The partitioned dataset, generated file by file in worker processes."""
    directory.mkdir(parents=True, exist_ok=True)
    jobs = [
        (directory / f"part.{i:05d}.parquet", i * rows, rows, seed + i, region)
        for i in range(files)
    ]
    todo = [j for j in jobs if not j[0].exists()]
    t = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(
        min(len(todo), os.cpu_count() or 1) or 1
    ) as pool:
        for _ in pool.imap_unordered(write_chunk, todo):
            pass
    size = sum(p.stat().st_size for p in directory.glob("*.parquet"))
    print(
        f"dataset: {files} files x {rows:,} accounts over {region} in {directory} "
        f"({size / 1e9:.2f} GB; generated in {time.perf_counter() - t:.0f} s)",
        flush=True,
    )
    return directory


# ---------------------------------------------------------------- memory


class PeakRSS:
    """Peak of the summed RSS of this process and all its descendants, sampled in a thread;
    also the CPU seconds they used (to tell a busy machine from a slow engine)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self.peak_self = 0
        self.peak_procs = 0
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def _run(self) -> None:
        me = psutil.Process()
        start = {p.pid: sum(p.cpu_times()[:2]) for p in [me, *me.children(recursive=True)]}
        while not self._stop.is_set():
            total, procs = 0, 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    with p.oneshot():
                        rss = p.memory_info().rss
                        cpu = sum(p.cpu_times()[:2])
                except psutil.Error:
                    continue
                self._cpu[p.pid] = cpu - start.get(p.pid, 0.0)
                total += rss
                procs += 1
                if p is me:
                    self.peak_self = max(self.peak_self, rss)
            if total > self.peak:
                self.peak, self.peak_procs = total, procs
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- runs


def run_one(source: Path, kind: str, resolution: int) -> dict:
    """build_layers_dask on the dataset with the default cluster; wall time and peak RSS."""
    from patchmap.distributed import build_layers_dask, cluster_size

    workers, limit = cluster_size()
    load = os.getloadavg()[0]
    with PeakRSS() as rss:
        t = time.perf_counter()
        result = build_layers_dask(str(source), units=kind, resolution=resolution)
        wall = time.perf_counter() - t
    assert result.n_read == result.n_placed + len(result.rejects)
    assert int(result.units["accounts"].sum()) == result.n_placed
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return {
        "kind": kind,
        "wall": wall,
        "result": result,
        "rss": rss.peak,
        "rss_self": rss.peak_self,
        "procs": rss.peak_procs,
        "workers": workers,
        "limit": limit,
        "cpu_share": rss.cpu_seconds / (wall * cores),
        "load": load,
    }


def render(
    rows: list[dict], files: int, per_file: int, region: str, resolution: int, command: str
) -> str:
    """The BENCHMARKS.md section (markdown)."""
    n = files * per_file
    lines = [
        SECTION,
        "",
        f"`patchmap.distributed.build_layers_dask` on {n:,} synthetic accounts over {region} "
        f"(`patchmap.sample`, {files} Parquet files of {per_file:,} rows, row groups of "
        f"{ROW_GROUP:,}; 0.1 % defective rows, 15 % located by ZIP only, won/lost history, so "
        "the look-alike model is trained on a 100k-row sample drawn from every partition). "
        "Two passes over the files (survey: validate, sample, percentiles, states, H3 cells; "
        "layers: validate, score, place, fold the per-unit sums), with the default local "
        "cluster. Wall time includes starting the cluster. Peak RSS: the sum over this process "
        "(client and scheduler) and all its children (nannies and workers), sampled every 0.1 s. "
        f"Target: <= {BUDGET_GIB:.0f} GB peak on 2 cores.",
        "",
        f"- date: {dt.date.today().isoformat()}",
        f"- machine: {machine(libs=LIBS)}",
        f"- command: `{command}`",
        "",
        "| units | accounts | partitions | workers x memory limit | wall (s) | accounts/s "
        "| peak RSS, all processes (GiB) | peak RSS, client + scheduler (GiB) | CPU share "
        "| steps (s) | units | placed | rejected |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        res = r["result"]
        steps = ", ".join(f"{k} {v:.1f}" for k, v in res.timings.items())
        label = f"{r['kind']} r{resolution}" if r["kind"] == "h3" else r["kind"]
        lines.append(
            f"| {label} | {res.n_read:,} | {r['partitions']} | {r['workers']} x "
            f"{r['limit'] / 2**30:.2f} GiB | {r['wall']:.0f} | {res.n_read / r['wall']:,.0f} | "
            f"{r['rss'] / 2**30:.2f} | {r['rss_self'] / 2**30:.2f} | {100 * r['cpu_share']:.0f} % | "
            f"{steps} | {len(res.units):,} | "
            f"{res.n_placed:,} | {len(res.rejects):,} |"
        )
    lines += [
        "",
        "CPU share: CPU seconds used by this process tree / (wall time x cores); below 100 % "
        "the cluster waited (on the scheduler, on the single-threaded fold, or for cores "
        "that other processes on the machine held; the 1-minute load average before each run: "
        + ", ".join(f"{r['kind']} {r['load']:.1f}" for r in rows)
        + ").",
        "",
        "The units equal the pandas engine's value for value (`tests/test_distributed.py` "
        "compares every column on a small dataset): per-unit sums are folded partition after "
        "partition in row order, the same additions as the pandas engine's `np.bincount`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--rows", type=int, default=500_000, help="accounts per file")
    ap.add_argument("--region", default="CA")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--units", default="zcta,h3", help="comma-separated: zcta,h3,county")
    ap.add_argument("--resolution", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=None, help="keep (and reuse) the dataset here")
    ap.add_argument("--no-md", action="store_true", help="do not write BENCHMARKS.md")
    ap.add_argument("--md", type=Path, default=REPO / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    command = " ".join(
        ["python benchmarks/layers_dask.py", *(shlex.quote(a) for a in (argv or sys.argv[1:]))]
    )

    with tempfile.TemporaryDirectory(prefix="patchmap-dask-bench-") as tmp:
        source = make_dataset(
            args.workdir or Path(tmp) / "accounts", args.files, args.rows, args.region, args.seed
        )
        import dask.dataframe as dd

        from patchmap.distributed import DEFAULT_BLOCKSIZE

        partitions = dd.read_parquet(str(source), blocksize=DEFAULT_BLOCKSIZE).npartitions
        rows = []
        for kind in args.units.split(","):
            r = run_one(source, kind, args.resolution)
            r["partitions"] = partitions
            rows.append(r)
            res = r["result"]
            print(
                f"{kind:6s} {res.tally()}: {r['wall']:.0f} s, {res.n_read / r['wall']:,.0f} accounts/s, "
                f"peak RSS {r['rss'] / 2**30:.2f} GiB over {r['procs']} processes "
                f"(client {r['rss_self'] / 2**30:.2f} GiB), CPU share {100 * r['cpu_share']:.0f} %, "
                f"load {r['load']:.1f}; {res.timings}",
                flush=True,
            )
    section = render(rows, args.files, args.rows, args.region, args.resolution, command)
    print()
    print(section)
    if not args.no_md:
        write_section(args.md, SECTION, section)
        print(f"wrote {SECTION!r} in {args.md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
