"""Notes on stderr and progress bars on long stages; `--quiet` and `--log-level` govern both."""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm

log = logging.getLogger("patchmap")
_state = {"progress": True}


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "note" if record.levelno <= logging.INFO else record.levelname.lower()
        return f"{prefix}: {record.getMessage()}"


def configure(level: str = "INFO", quiet: bool = False) -> None:
    """Send patchmap's log to stderr at ``level`` (WARNING when quiet); bars off when quiet."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else level.upper())
    log.propagate = False
    _state["progress"] = not quiet


def progress(total: int, desc: str) -> tqdm:
    """A bar over a stage's steps, shown on an interactive terminal unless quiet."""
    disabled = (
        not _state["progress"] or not sys.stderr.isatty() or log.getEffectiveLevel() > logging.INFO
    )
    return tqdm(total=total, desc=desc, disable=disabled, file=sys.stderr, leave=False)
