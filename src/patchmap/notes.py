"""Notes: what a stage tells the user, as text for people and a code and data for code.

A :class:`Note` is the message itself (a ``str``: printed, logged, compared and written as
before), with a ``code`` naming what it says and ``data`` holding its numbers, so later
code (the Dask engine adding up partitions' notes, a report picking one out) reads the
fields instead of parsing the text by position or prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Note", "merge_counts", "with_code"]


class Note(str):
    """A message with a ``code`` (what it says) and ``data`` (its values)."""

    code: str
    data: dict[str, Any]

    def __new__(cls, code: str, message: str, **data: Any) -> Note:
        note = super().__new__(cls, message)
        note.code = code
        note.data = data
        return note

    def __getnewargs__(self) -> tuple[str, str]:  # pickling (Dask ships notes between processes)
        return (self.code, str(self))

    def __repr__(self) -> str:
        return f"Note({self.code!r}, {str(self)!r}, **{self.data!r})"


def with_code(notes: Iterable[str], code: str) -> list[Note]:
    """The notes whose ``code`` is ``code``, in order (how code and tests pick a note out)."""
    return [n for n in notes if getattr(n, "code", None) == code]


def merge_counts(notes: Iterable[str], makers: dict[str, Callable[..., Note]]) -> list[str]:
    """Notes of several parts as one list: notes whose ``code`` has a maker in ``makers``
    and the same data but ``count`` (and ``example``: the first part's is kept) become one
    note with the counts added (first place kept); others are kept once each, in order."""
    out: list[str] = []
    merged: dict[tuple, int] = {}
    for note in notes:
        code = getattr(note, "code", None)
        if code in makers and "count" in note.data:
            rest = tuple(
                sorted((k, v) for k, v in note.data.items() if k not in ("count", "example"))
            )
            key = (code, rest)
            if key in merged:
                i = merged[key]
                out[i] = makers[code](
                    **{**out[i].data, "count": out[i].data["count"] + note.data["count"]}
                )
            else:
                merged[key] = len(out)
                out.append(note)
        elif note not in out:
            out.append(note)
    return out
