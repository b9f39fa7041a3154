"""Reading tables and unit files, and writing every output atomically."""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import glob
import inspect
import io as io_module
import mmap
import os
import re
import signal
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from patchmap.errors import InputError, Terminated
from patchmap.logs import log
from patchmap.options import error

TABLE_SUFFIXES = {".csv", ".txt", ".tsv", ".parquet", ".pq", ".xlsx", ".xls"}


# ------------------------------------------------------------------------ writing
#
# Every file patchmap writes goes through :func:`atomic_path`: the one place that refuses
# a target that is an input or not a regular file, turns an unwritable location into a
# one-line InputError, and (inside :func:`one_run`) holds every file of a command back
# until the command has finished, so a folder is always one whole run.

TEMP_MARK = ".patchmap-tmp"  # in every temporary file's name, so a stale one can be found


@dataclass
class _Run:
    """The files one command reads and writes, committed together at the end."""

    inputs: dict[tuple[int, int], Path] = field(default_factory=dict)  # (dev, inode) -> path
    pending: dict[Path, Path] = field(default_factory=dict)  # target -> its temporary file
    stale: list[Path] = field(default_factory=list)  # a previous run's files to remove
    made_dirs: list[Path] = field(default_factory=list)
    swept: set[Path] = field(default_factory=set)
    committed: bool = False  # every pending file put in place


_RUN: _Run | None = None
_LIVE: set[Path] = set()  # this process's temporary files not yet put in place or removed
_HOLDING = 0  # depth of the _signals_held blocks running
_DEFERRED: int | None = None  # a termination signal that arrived inside one


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def note_input(*paths: str | os.PathLike | None) -> None:
    """Record files a command reads: inside :func:`one_run` no output may replace them."""
    if _RUN is None:
        return
    for path in paths:
        if path is None or not isinstance(path, (str, os.PathLike)):
            continue
        p = Path(path)
        key = _file_key(p)
        if key is not None and p.is_file():
            _RUN.inputs.setdefault(key, p)


def check_target(path: str | os.PathLike) -> Path:
    """Refuse, with a one-line InputError, a path no output may be written to.

    An existing target must be a regular file (not a symlink, FIFO, device or folder),
    must not be a file the current command reads, and its folder must be a folder.
    """
    target = Path(path)
    if os.path.lexists(target):
        st = target.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise InputError(f"{target}: output path is a symbolic link; refusing to replace it")
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{target}: output path is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            kind = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device",
                    stat.S_IFSOCK: "a socket"}.get(stat.S_IFMT(st.st_mode), "not a regular file")  # fmt: skip
            raise InputError(f"{target}: output path is {kind}; refusing to replace it")
        if _RUN is not None and (st.st_dev, st.st_ino) in _RUN.inputs:
            src = _RUN.inputs[(st.st_dev, st.st_ino)]
            same = "" if src == target else f" ({src})"
            raise InputError(
                f"{target}: output would replace an input of this command{same}; "
                "choose another output name"
            )
    for parent in [target.parent, *target.parent.parents]:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise InputError(f"{target}: cannot write: {parent} is a file, not a folder")
            break
    return target


def _mkdirs(folder: Path) -> None:
    missing = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None
    if _RUN is not None:
        _RUN.made_dirs.extend(reversed(missing))


def _sweep(folder: Path) -> None:
    """Remove temporary files a killed patchmap left in ``folder`` (their process is gone)."""
    if _RUN is not None:
        if folder in _RUN.swept:
            return
        _RUN.swept.add(folder)
    try:
        names = [n for n in os.listdir(folder) if TEMP_MARK in n and n.startswith(".")]
    except OSError:
        return
    for name in names:
        m = re.search(r"\.(\d+)-[^.]*" + re.escape(TEMP_MARK), name)
        if m is None or _alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            (folder / name).unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _cannot_write(target: Path, exc: OSError) -> InputError:
    why = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        why = "no space left on the device"
    return InputError(f"{target}: cannot write ({why})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, immediate: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only on success.

    An interrupted or failed write never leaves a half-written file where a good one was.
    Inside :func:`one_run` the file is put in place when the whole command has succeeded
    (``immediate=True``: at once, e.g. for a cache the command reads back). The target is
    checked first (:func:`check_target`); an unwritable location is an InputError.
    """
    target = check_target(path)
    _mkdirs(target.parent)
    _sweep(target.parent)
    keep = False
    tmp_path: Path | None = None
    try:
        with _signals_held():  # a SIGTERM now would leave the new file unseen by cleanup
            try:
                fd, name = tempfile.mkstemp(
                    prefix=f".{target.name}.{os.getpid()}-",
                    suffix=f"{TEMP_MARK}{target.suffix}",
                    dir=target.parent,
                )
            except OSError as exc:
                raise _cannot_write(target, exc) from None
            os.close(fd)
            tmp_path = Path(name)
            _LIVE.add(tmp_path)
        try:
            yield tmp_path
        except OSError as exc:
            if exc.filename is not None and Path(exc.filename) not in (tmp_path, target):
                raise
            raise _cannot_write(target, exc) from None
        if tmp_path.exists():  # mkstemp makes 0600 files; give the output ordinary permissions
            os.chmod(tmp_path, 0o666 & ~_umask())
        if _RUN is not None and not immediate:
            with _signals_held():
                old = _RUN.pending.pop(target, None)
                if old is not None and old != tmp_path:
                    with contextlib.suppress(OSError):
                        old.unlink()
                _RUN.pending[target] = tmp_path
                keep = True
        else:
            try:
                os.replace(tmp_path, target)
            except OSError as exc:
                raise _cannot_write(target, exc) from None
            _LIVE.discard(tmp_path)
    finally:
        if not keep and tmp_path is not None:
            _remove_temp(tmp_path)


def _remove_temp(tmp: Path) -> None:
    """A temporary file and what its writer made beside it (GPKG ``-journal``, ``-wal``)."""
    for p in [tmp, *tmp.parent.glob(glob.escape(tmp.name) + "-*")]:
        with contextlib.suppress(OSError):
            p.unlink()
    _LIVE.discard(tmp)


def remove_temporary_files() -> None:
    """Remove every temporary file this process made and has not put in place.

    The CLI calls it when a command ends by an error or a signal: a signal can arrive in
    the few instructions between a temporary file's creation and the ``with`` block that
    owns it, where no ``finally`` clause covers it yet.
    """
    with _signals_held():
        for tmp in list(_LIVE):
            _remove_temp(tmp)


_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, n))


@contextlib.contextmanager
def one_run(inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[None]:
    """Run a command as one unit of output: every file written inside appears together at
    the end, or (on an error, Ctrl-C or SIGTERM) none does and no temporary file is left.

    ``inputs`` are files the command reads: no output may replace one (exit 2). Nested
    calls join the outermost run.
    """
    global _RUN
    if _RUN is not None:
        note_input(*inputs)
        yield
        return
    _RUN = run = _Run()
    note_input(*inputs)
    ok = False
    try:
        yield
        ok = True
    finally:
        _RUN = None
        if ok:
            try:
                _commit(run)
            except Terminated as exc:  # arrived during the commit, held until it was done
                exc.written = run.committed
                raise
        else:
            _discard(run)


def remove_output(path: str | os.PathLike) -> None:
    """Remove a previous run's output file (e.g. a territory that no longer exists) when
    this run's files are put in place, so a folder holds one run only."""
    p = Path(path)
    if _RUN is None:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    else:
        _RUN.stale.append(p)


def defer_signal(signum: int) -> bool:
    """For a termination signal's handler: True when a held block is running (the signal
    is kept, and raised as :class:`Terminated` when the block ends), False when the
    handler should act at once.

    The mask of :func:`_signals_held` holds a signal sent to the main thread, but the
    kernel may hand a process-directed SIGTERM to any thread that does not block it (the
    OpenMP and BLAS workers of a model fit): Python then runs the handler in the main
    thread anyway, in the middle of the block. This catches that case.
    """
    global _DEFERRED
    if _HOLDING:
        _DEFERRED = _DEFERRED or signum
        return True
    return False


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGTERM, SIGINT and SIGHUP until the block is done (then they arrive)."""
    global _HOLDING, _DEFERRED
    masked = hasattr(signal, "pthread_sigmask")
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS) if masked else None
    _HOLDING += 1
    try:
        yield
    finally:
        _HOLDING -= 1
        if masked:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if not _HOLDING and _DEFERRED is not None:
            signum, _DEFERRED = _DEFERRED, None
            raise Terminated(signum)


def _commit(run: _Run) -> None:
    """Put every pending file in place, with termination signals held off meanwhile."""
    with _signals_held():
        written = set(run.pending)
        for target, tmp in list(run.pending.items()):
            try:
                os.replace(tmp, target)
            except OSError as exc:
                run.pending.pop(target)
                _remove_temp(tmp)
                _discard(run)
                raise _cannot_write(target, exc) from None
            run.pending.pop(target)
            _LIVE.discard(tmp)
        run.committed = True
        for p in run.stale:
            if p not in written and os.path.isfile(p) and not os.path.islink(p):
                with contextlib.suppress(OSError):
                    p.unlink()


def _discard(run: _Run) -> None:
    for tmp in run.pending.values():
        _remove_temp(tmp)
    run.pending.clear()
    for folder in reversed(run.made_dirs):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty


def writes_outputs(*outputs: str) -> Callable:
    """Decorator: run a file-level stage function as :func:`one_run`, its file arguments
    (all but the parameters named in ``outputs``) recorded as inputs, and the outputs
    checked against them before any work is done."""

    def wrap(f: Callable) -> Callable:
        sig = inspect.signature(f)

        @functools.wraps(f)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = sig.bind_partial(*args, **kwargs)
            except TypeError:
                return f(*args, **kwargs)
            ins, outs = [], []
            for name, value in bound.arguments.items():
                if name in outputs:
                    outs.append(value)
                    continue
                if isinstance(value, (str, os.PathLike)):
                    ins.append(value)
                if hasattr(value, "input_files"):
                    ins.extend(p for _, _, p in value.input_files())
                    ins.append(getattr(value, "source", None))
            with one_run(ins):
                for out in outs:
                    # a file name (with a suffix), or anything already there but a folder
                    # (a device such as /dev/null): refused before the work, not after it
                    if isinstance(out, (str, os.PathLike)) and (
                        Path(out).suffix or (os.path.lexists(out) and not os.path.isdir(out))
                    ):
                        check_target(out)
                return f(*args, **kwargs)

        call.__signature__ = sig  # type: ignore[attr-defined]
        return call

    return wrap


def side_path(plan_path: str | os.PathLike, name: str) -> Path:
    """A side file named after the plan: ``plan.csv`` + ``reps.csv`` -> ``plan.reps.csv``."""
    p = Path(plan_path)
    stem = p.stem if p.suffix else p.name
    return p.with_name(f"{stem}.{name}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: What a spreadsheet takes for the start of a formula (OWASP CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def neutralize_formulas(values: pd.Series) -> pd.Series:
    """Text cells starting with ``= + - @``, a tab or a CR get a leading ``'`` (as OWASP
    recommends), unless the text is a plain number (``-5``, ``+1.5e3``)."""
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return values
    text = values.astype("string")
    risky = text.str.startswith(FORMULA_START).fillna(False) & ~text.str.match(
        _NUMBER.pattern
    ).fillna(False)
    if not risky.any():
        return values
    out = values.astype(object).copy()
    out[risky.to_numpy()] = "'" + text[risky]
    return out


def safe_cell(value: Any) -> Any:
    """One cell (or header) as :func:`neutralize_formulas` would write it."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell and column name that could start a formula neutralized."""
    cols = [safe_cell(c) for c in df.columns]
    changed = {}
    for i in range(df.shape[1]):
        col = df.iloc[:, i]
        if col.dtype.kind not in "biufcmM":
            safe = neutralize_formulas(col)
            if safe is not col:
                changed[i] = safe
    if not changed and all(a is b for a, b in zip(cols, df.columns, strict=True)):
        return df
    out = df.copy()
    for i, v in changed.items():
        out.isetitem(i, v.to_numpy())
    out.columns = cols
    return out


def write_csv(
    df: pd.DataFrame, path: str | os.PathLike, *, immediate: bool = False, **kwargs
) -> Path:
    """Write a CSV atomically (no index unless asked), formula-safe: every CSV patchmap
    exports goes through here, so no cell starts a spreadsheet formula. ``immediate``:
    in place at once even inside :func:`one_run` (a rejects file a failing run leaves)."""
    kwargs.setdefault("index", False)
    safe = csv_safe(df)
    if kwargs["index"]:
        if safe is df:
            safe = df.copy()
        safe.index = pd.Index(neutralize_formulas(pd.Series(df.index)), name=df.index.name)
    if "quoting" not in kwargs and _has_carriage_return(safe):
        # the csv module quotes only the line terminator ("\n"): a field holding a bare CR
        # would be written bare and read back by Excel or pandas as two rows
        kwargs["quoting"] = csv.QUOTE_NONNUMERIC
    with atomic_path(path, immediate=immediate) as tmp:
        safe.to_csv(tmp, **kwargs)
    return Path(path)


def _has_carriage_return(df: pd.DataFrame) -> bool:
    """Whether any column name, index label or text cell of ``df`` holds a CR."""
    names = [*map(str, df.columns), *map(str, df.index.names)]
    if any("\r" in n for n in names):
        return True
    texts = [df.iloc[:, i] for i in range(df.shape[1]) if df.iloc[:, i].dtype.kind == "O"]
    if df.index.dtype.kind == "O":
        texts.append(pd.Series(df.index))
    for col in texts:
        try:
            found = col.str.contains("\r", regex=False, na=False).any()
        except AttributeError:  # no text at all in this column
            continue
        if found:
            return True
    return False


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_markdown(text: str, path: str | os.PathLike) -> Path:
    """Write a Markdown report atomically with every ``<`` as ``&lt;``: labels, ids and
    file names in it are the user's, and a Markdown viewer renders a raw ``<img …>`` as
    HTML. patchmap's reports use no HTML of their own, so nothing else changes."""
    return write_text(text.replace("<", "&lt;"), path)


def write_units(units: gpd.GeoDataFrame, path: str | os.PathLike) -> Path:
    """Write a unit GeoDataFrame; the format follows the suffix (GeoParquet by default)."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in {".parquet", ".geoparquet", ".pq", ".gpkg", ".geojson", ".json"}:
        raise InputError(
            f"{target}: unsupported unit file type {suffix!r} (use .parquet, .gpkg or .geojson)"
        )
    with atomic_path(target) as tmp:
        if suffix in {".parquet", ".geoparquet", ".pq"}:
            units.to_parquet(tmp, compression="zstd", index=False)
        elif suffix == ".gpkg":
            tmp.unlink()
            units.to_file(tmp, driver="GPKG", engine="pyogrio", layer=target.stem)
        else:
            tmp.unlink()
            units.to_file(tmp, driver="GeoJSON", engine="pyogrio", layer=target.stem)
    return target


def _require_file(path: Path) -> None:
    note_input(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")


#: What pandas reads as missing by default; kept out of id columns (``NA`` is an id there).
NA_TEXT = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
           "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]  # fmt: skip
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def read_table(
    path: str | os.PathLike,
    *,
    dtype: dict | str | type | None = None,
    sheet: str | None = None,
    encoding: str | None = None,
) -> pd.DataFrame:
    """Read a CSV, Parquet or Excel table into a DataFrame; errors name the file.

    Text files: UTF-8 unless ``encoding`` says otherwise, the delimiter detected from the
    header (comma, semicolon, tab or pipe), a CR inside a field kept as text. Columns
    given as text in ``dtype`` (e.g. ids) are read as written: ``NA``, ``None`` and
    ``null`` are ids, not blanks. A column name twice is an error. Excel: every sheet with
    data (they must have the same columns), or only ``sheet``.
    """
    p = Path(path)
    _require_file(p)
    suffix = p.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"} or p.is_dir():
            df = pd.read_parquet(p)
        elif suffix in {".xlsx", ".xls"}:
            df = _read_excel(p, dtype, sheet)
        else:
            df = _read_text_table(p, dtype, encoding or "utf-8-sig", suffix)
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{p}: file is empty") from None
    except UnicodeDecodeError as exc:
        raise error(
            "layers",
            f"{p}: not {encoding or 'UTF-8'} text (byte 0x{exc.object[exc.start]:02x} at "
            f"position {exc.start}); give its encoding, e.g. {{encoding=latin-1}} or cp1252",
        ) from None
    except LookupError:
        raise InputError(f"{p}: unknown encoding {encoding!r}") from None
    except (pd.errors.ParserError, ValueError, OSError, csv.Error) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{p}: cannot read as a table ({first})") from None
    if df.empty:
        raise InputError(f"{p}: no rows")
    df.columns = [str(c).strip() for c in df.columns]
    _check_unique_columns(df.columns, p)
    return df


def _check_unique_columns(columns: Iterable[str], p: Path) -> None:
    seen: dict[str, int] = {}
    for i, c in enumerate(columns, start=1):
        if c in seen:
            raise InputError(
                f"{p}: column {c!r} appears twice (columns {seen[c]} and {i}); rename one"
            )
        seen[c] = i


def _text_columns(dtype: Any) -> set[str]:
    if isinstance(dtype, Mapping):
        return {c for c, t in dtype.items() if t in (str, "str", "string", object, "object")}
    return set()


def _read_text_table(p: Path, dtype: Any, encoding: str, suffix: str) -> pd.DataFrame:
    with open(p, "rb") as fh:
        head = fh.read(1 << 16)
        has_cr = b"\r" in head
        if not has_cr:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                has_cr = mm.find(b"\r") >= 0
    text_head = head.decode(encoding, errors="replace").lstrip("\ufeff")
    first_line = text_head.replace("\r\n", "\n").split("\n", 1)[0]
    sep = "\t" if suffix == ".tsv" else _delimiter(first_line)
    if sep != "," and suffix != ".tsv":
        log.info(f"{p}: {DELIMITERS[sep]}-separated")
    header = next(csv.reader([first_line], delimiter=sep), [])
    _check_unique_columns([h.strip() for h in header], p)
    text = _text_columns(dtype)
    kw: dict[str, Any] = dict(sep=sep, dtype=dtype, encoding=encoding)
    if text:  # ids as written: no NA parsing in text columns, the usual elsewhere
        kw.update(keep_default_na=False,
                  na_values={h: NA_TEXT for h in header if h.strip() not in text})  # fmt: skip
        kw["dtype"] = {h: dtype[h.strip()] for h in header if h.strip() in dtype} or None
    source: Any = p
    if has_cr:  # CRLF -> LF; a bare CR left is text inside a field, not a new row
        data = p.read_bytes()
        if b"\n" in data:
            source = io_module.BytesIO(data.replace(b"\r\n", b"\n"))
            kw["lineterminator"] = "\n"
    return pd.read_csv(source, **kw)


def _delimiter(line: str) -> str:
    """The delimiter of a header line: the most frequent of , ; tab | outside quotes."""
    outside = re.sub(r'"[^"]*"', "", line)
    counts = {d: outside.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] > 0 else ","


def _read_excel(p: Path, dtype: Any, sheet: str | None) -> pd.DataFrame:
    book = pd.read_excel(p, sheet_name=None, dtype=dtype)
    names = list(book)
    if sheet is not None:
        if sheet not in book:
            raise InputError(f"{p}: no sheet {sheet!r} (sheets: {', '.join(names)})")
        return book[sheet]
    full = {n: df.dropna(how="all") for n, df in book.items()}
    full = {n: df for n, df in full.items() if len(df)}
    if not full:
        raise InputError(f"{p}: no rows in any sheet (sheets: {', '.join(names)})")
    if len(full) == 1:
        ((name, df),) = full.items()
        if len(book) > 1:
            log.info(f"{p}: read sheet {name!r} (the other sheets are empty)")
        return book[name]
    cols = {n: [str(c).strip() for c in df.columns] for n, df in full.items()}
    first = next(iter(cols))
    differ = [n for n in cols if cols[n] != cols[first]]
    if differ:
        raise error(
            "layers",
            f"{p}: sheets {first!r} and {differ[0]!r} have different columns; read one with "
            f"{{sheet}} NAME (sheets with data: {', '.join(full)})",
        )
    log.info(
        f"{p}: read {len(full)} sheets with the same columns: "
        + ", ".join(f"{n!r} ({len(df)} rows)" for n, df in full.items())
    )
    return pd.concat([book[n] for n in full], ignore_index=True)


def listed_lines(lines: Iterable[int], word: str = "line", limit: int = 5) -> str:
    """``line 3`` or ``lines 3, 7, 9 and 4 more``, for a one-line error message."""
    lines = [int(n) for n in lines]
    more = f" and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"{word}{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:limit]))}{more}"


def check_ids(
    df: pd.DataFrame,
    columns: Sequence[str],
    *,
    source: str,
    first_line: int = 2,
    word: str = "line",
) -> tuple[pd.DataFrame, np.ndarray]:
    """Stripped text of ``columns`` and each row's line number; ``columns[0]`` is the id.

    A blank cell in any of ``columns``, or an id on more than one row, raises a one-line
    InputError naming ``source`` and the lines (numbered from ``first_line``: 2 in a file
    whose header is line 1; ``word`` names them, e.g. ``row`` for a table in memory).
    """
    lines = np.arange(len(df)) + first_line
    text = pd.DataFrame({c: df[c].astype("string").str.strip() for c in columns}, index=df.index)
    blank = (text.isna() | (text == "")).any(axis=1).to_numpy()
    if blank.any():
        raise InputError(
            f"{source}: {listed_lines(lines[blank], word)}: empty {' or '.join(columns)}"
        )
    text = text.astype(str)
    ids = text[columns[0]]
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        first = ids[dup].iloc[0]
        n = int(ids.duplicated().sum())
        raise InputError(
            f"{source}: {columns[0]} {first!r} appears on "
            f"{listed_lines(lines[(ids == first).to_numpy()], word)} "
            f"({n} duplicate row{'s' if n > 1 else ''} in all)"
        )
    return text, lines


def check_known_ids(
    ids: pd.Series,
    lines: np.ndarray,
    known: Iterable[str],
    *,
    source: str,
    word: str = "line",
    limit: int = 5,
) -> None:
    """Raise a one-line InputError when an id of ``ids`` is not among ``known`` (the units).

    ``ids`` and ``lines`` are as :func:`check_ids` returns them; the message names
    ``source`` and up to ``limit`` offending lines with their ids, e.g.
    ``plan.csv: unit_id not among the units on line 3 ('99999') and 2 more``.
    """
    known = known if isinstance(known, pd.Index) else pd.Index(pd.Series(list(known)).astype(str))
    unknown = ~ids.isin(known).to_numpy()
    if not unknown.any():
        return
    shown = ", ".join(
        f"{word} {ln} ({u!r})"
        for ln, u in zip(lines[unknown][:limit], ids[unknown].iloc[:limit], strict=True)
    )
    n = int(unknown.sum())
    more = f" and {n - limit} more" if n > limit else ""
    raise InputError(f"{source}: {ids.name or 'unit_id'} not among the units on {shown}{more}")


def read_polygon_file(path: str | os.PathLike) -> gpd.GeoDataFrame:
    """Read any file geopandas reads (GeoParquet, GeoPackage, GeoJSON, Shapefile), CRS as is."""
    p = Path(path)
    _require_file(p)
    try:
        if p.suffix.lower() in {".parquet", ".geoparquet", ".pq"}:
            gdf = gpd.read_parquet(p)
        else:
            gdf = gpd.read_file(p, engine="pyogrio")
    except Exception as exc:  # any reader failure is the user's file, reported in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{p}: cannot read as polygons ({first})") from None
    if len(gdf) == 0:
        raise InputError(f"{p}: no units")
    return gdf


def read_units(path: str | os.PathLike) -> gpd.GeoDataFrame:
    """Read a unit file in EPSG:4326 (a file without a CRS is taken as lon/lat)."""
    gdf = read_polygon_file(path)
    if gdf.crs is None:
        return gdf.set_crs(4326)
    return gdf if gdf.crs.equals("EPSG:4326") else gdf.to_crs(4326)
