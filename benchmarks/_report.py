"""Shared helpers for the benchmark scripts: the machine line and BENCHMARKS.md sections.

The scripts run as ``python benchmarks/NAME.py``, which puts this directory on ``sys.path``,
so they import it as ``from _report import machine, write_section``.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterable
from pathlib import Path


def _cpu_model() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def _memory_gib() -> float | None:
    try:
        meminfo = Path("/proc/meminfo").read_text()
        match = re.search(r"MemTotal:\s+(\d+)", meminfo)
        if match:
            return int(match.group(1)) / 1024**2
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (AttributeError, OSError, ValueError):
        return None


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{dist} {version(dist)}"
    except PackageNotFoundError:
        return f"{dist} (not installed)"


def machine(extra: bool = True, libs: Iterable[str] = ()) -> str:
    """One line: CPU model, cores, OS and Python.

    With ``extra`` (the default) it also gives the memory and the kernel release; ``libs``
    (distribution names, e.g. ``"pandas"``, ``"scikit-learn"``) appends their versions.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    hw = f"{_cpu_model()}, {cores} cores"
    system = platform.system()
    if extra:
        mem = _memory_gib()
        if mem is not None:
            hw += f", {mem:.0f} GiB RAM"
        system += f" {platform.release()}"
    soft = ", ".join([f"Python {platform.python_version()}", *(_version(d) for d in libs)])
    return f"{hw}; {system}; {soft}"


def write_section(md: Path, title: str, section: str) -> None:
    """Replace the ``title`` section of ``md`` with ``section`` (or append it); keep the rest.

    ``title`` is the section's heading line (``## ...``); the section runs to the next
    ``## `` heading or the end of the file. Sections are separated by one blank line.
    """
    md = Path(md)
    text = md.read_text(encoding="utf-8") if md.exists() else "# Benchmarks\n"
    section = section.rstrip("\n") + "\n"
    pattern = re.compile(rf"^{re.escape(title)}[ \t]*$.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(text)
    if found:
        rest = text[found.end() :]
        text = text[: found.start()] + section + ("\n" + rest if rest else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    from patchmap.io import write_text  # atomic: a failed run never leaves half a file

    write_text(text.rstrip("\n") + "\n", md)
