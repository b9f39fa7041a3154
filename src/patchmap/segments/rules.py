"""Segment rules: a small, safe expression language over account columns.

A rule such as ``employees >= 1000 or annual_revenue >= 5e8`` or
``industry in ('Healthcare', 'Biotech') and not state == 'DC'`` is parsed by Python's own
parser (:func:`ast.parse`, which only builds a tree and runs nothing), then every node is
checked against a short whitelist and evaluated here, vectorized over the whole table.
User text is never passed to ``eval``: function calls, attribute access, subscripts,
lambdas, comprehensions and names starting with ``__`` are refused before anything runs.

The language:

- column names (as the accounts file spells them; ``true``/``false`` are the constants);
- numbers (``1000``, ``5e8``, ``1_000``), text in quotes (``'Healthcare'``);
- ``==  !=  <  <=  >  >=`` (chains such as ``100 <= employees < 1000`` too),
  ``in (...)`` / ``not in (...)`` with a list of constants;
- ``+ - * /`` between numbers and numeric columns (``visits * minutes > 600``);
- ``and``, ``or``, ``not`` and parentheses; a bare numeric or true/false column is true
  where it is non-zero.

Text is compared exactly (case and all, surrounding spaces ignored). A missing value
matches no comparison, not even ``!=`` (as in SQL); ``not`` then makes it match.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from patchmap.errors import InputError
from patchmap.options import did_you_mean

__all__ = ["Rule", "RuleError"]

#: Longest rule accepted (a guard against pathological input, not a style limit).
MAX_RULE_LENGTH = 4000
_CONSTANTS = {"true": True, "false": False, "True": True, "False": False}
_COMPARE = {
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
}
_ARITH = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_WORDS = {
    ast.Call: "function calls",
    ast.Attribute: "attribute access ('.')",
    ast.Subscript: "subscripts ('[...]')",
    ast.Lambda: "lambda",
    ast.IfExp: "if/else",
    ast.NamedExpr: "':='",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.JoinedStr: "f-strings",
    ast.Starred: "'*'",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


class RuleError(InputError):
    """A rule that cannot be parsed or evaluated; the message says where and why."""


@dataclass(frozen=True)
class _Values:
    """An evaluated sub-expression: a scalar or one value per row, of one kind."""

    kind: str  # "num", "text" or "bool"
    values: object  # np.ndarray (per row) or a Python scalar
    missing: np.ndarray | bool = False  # per row: the value is missing


@dataclass(frozen=True)
class Rule:
    """A parsed, checked rule; :meth:`evaluate` gives one boolean per account."""

    text: str
    tree: ast.Expression
    columns: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Parse and check ``text``; :class:`RuleError` for a syntax error or a refused
        construct (no part of the rule runs)."""
        if not isinstance(text, str):
            raise RuleError(f"expected the rule as text, got {type(text).__name__}")
        source = text.strip()
        if not source:
            raise RuleError("empty rule (write true to match every account)")
        if len(source) > MAX_RULE_LENGTH:
            raise RuleError(f"rule longer than {MAX_RULE_LENGTH} characters")
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError as exc:
            where = f" at column {exc.offset}" if exc.offset else ""
            raise RuleError(f"syntax error{where}: {exc.msg}") from None
        except (RecursionError, MemoryError, ValueError):
            raise RuleError("rule too deeply nested to read") from None
        columns: list[str] = []
        _check(tree.body, columns)
        return cls(source, tree, tuple(dict.fromkeys(columns)))

    def check_columns(self, available: Iterable[str]) -> None:
        """:class:`RuleError` naming the first column the table does not have."""
        have = [str(c) for c in available]
        for col in self.columns:
            if col not in have:
                raise RuleError(f"unknown column {col!r}{did_you_mean(col, have)}")

    def evaluate(self, table: pd.DataFrame) -> np.ndarray:
        """One boolean per row of ``table``: whether the row matches the rule."""
        self.check_columns(table.columns)
        try:
            out = _Evaluator(table).truth(self.tree.body)
        except RecursionError:
            raise RuleError("rule too deeply nested to evaluate") from None
        return np.asarray(out, dtype=bool)

    def __str__(self) -> str:
        return self.text


# --------------------------------------------------------------------------- checking


def _check(node: ast.AST, columns: list[str]) -> None:
    """Refuse every node outside the whitelist; collect the column names used."""
    if isinstance(node, ast.BoolOp):
        for v in node.values:
            _check(v, columns)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            raise RuleError(f"operator {_op(node.op)!r} not allowed in a rule")
        _check(node.operand, columns)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _ARITH:
            raise RuleError(f"operator {_op(node.op)!r} not allowed in a rule (use + - * /)")
        _check(node.left, columns)
        _check(node.right, columns)
    elif isinstance(node, ast.Compare):
        _check(node.left, columns)
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(right, (ast.Tuple, ast.List)):
                    raise RuleError("'in' needs a list of values, e.g. state in ('RI', 'DE')")
                for item in right.elts:
                    if _constant(item) is None:
                        raise RuleError("the list after 'in' may hold only numbers and text")
            elif type(op) in _COMPARE:
                _check(right, columns)
            else:
                raise RuleError(f"comparison {_op(op)!r} not allowed in a rule")
    elif isinstance(node, ast.Name):
        if node.id.startswith("__"):
            raise RuleError(f"name {node.id!r} not allowed in a rule")
        if node.id not in _CONSTANTS:
            columns.append(node.id)
    elif isinstance(node, ast.Constant):
        if _constant(node) is None:
            raise RuleError(f"constant {node.value!r} not allowed in a rule (numbers and text)")
    else:
        what = _WORDS.get(type(node), type(node).__name__)
        raise RuleError(f"{what} not allowed in a rule")


def _constant(node: ast.AST) -> tuple[object] | None:
    """``(value,)`` of a number, text or true/false literal (a signed number too)."""
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, (bool, int, float, str)) and not isinstance(v, complex):
            return (v,)
        return None
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return (_CONSTANTS[node.id],)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _constant(node.operand)
        if (
            inner is not None
            and isinstance(inner[0], (int, float))
            and not isinstance(inner[0], bool)
        ):
            return (-inner[0] if isinstance(node.op, ast.USub) else inner[0],)
    return None


def _op(op: ast.AST) -> str:
    return {
        ast.Mod: "%", ast.Pow: "**", ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<",
        ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.Invert: "~",
        ast.Is: "is", ast.IsNot: "is not",
    }.get(type(op), type(op).__name__)  # fmt: skip


# --------------------------------------------------------------------------- evaluating


class _Evaluator:
    """Evaluates a checked tree over a table, whole columns at a time."""

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = table
        self.n = len(table)
        self._cache: dict[tuple[str, str], _Values] = {}

    # -- booleans
    def truth(self, node: ast.AST) -> np.ndarray:
        if isinstance(node, ast.BoolOp):
            parts = [self.truth(v) for v in node.values]
            fold = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return fold.reduce(parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~self.truth(node.operand)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        v = self.value(node)
        if v.kind == "text":
            name = node.id if isinstance(node, ast.Name) else "text"
            raise RuleError(f"{name!r} is text, not true/false: compare it, e.g. {name} == 'value'")
        out = np.broadcast_to(np.asarray(v.values, dtype=float) != 0, (self.n,))
        return out & ~np.broadcast_to(v.missing, (self.n,))

    def compare(self, node: ast.Compare) -> np.ndarray:
        out = np.ones(self.n, dtype=bool)
        left_node, left = node.left, self.value(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                items = [_constant(e)[0] for e in right_node.elts]  # type: ignore[attr-defined,index]
                hit = self._isin(left, left_node, items)
                out &= ~hit if isinstance(op, ast.NotIn) else hit
                out &= ~np.broadcast_to(left.missing, (self.n,))
                continue
            right = self.value(right_node)
            a, b = self._same_kind(left, right, left_node, right_node)
            with np.errstate(invalid="ignore"):
                hit = np.broadcast_to(_COMPARE[type(op)](a, b), (self.n,))
            gone = np.broadcast_to(left.missing, (self.n,)) | np.broadcast_to(
                right.missing, (self.n,)
            )
            out &= hit & ~gone
            left_node, left = right_node, right
        return out

    def _isin(self, left: _Values, node: ast.AST, items: list) -> np.ndarray:
        nums = [x for x in items if isinstance(x, (int, float)) and not isinstance(x, bool)]
        texts = [x for x in items if isinstance(x, str)]
        if left.kind == "text":
            if nums and not texts:
                left = self._as_number(left, node)
                return np.broadcast_to(np.isin(left.values, nums), (self.n,))
            wanted = [t.strip() for t in texts] + [_number_text(x) for x in nums]
            return np.broadcast_to(pd.Series(left.values).isin(wanted).to_numpy(), (self.n,))
        values = np.asarray(left.values, dtype=float)
        if texts:
            bad = texts[0]
            raise RuleError(f"{_name(node)} is a number, compared with text {bad!r}")
        return np.broadcast_to(np.isin(values, [float(x) for x in items]), (self.n,))

    def _same_kind(self, left: _Values, right: _Values, ln: ast.AST, rn: ast.AST):
        if left.kind == "text" and right.kind == "text":
            return left.values, right.values
        if left.kind == "text":
            left = self._as_number(left, ln, right)
        if right.kind == "text":
            right = self._as_number(right, rn, left)
        return np.asarray(left.values, dtype=float), np.asarray(right.values, dtype=float)

    def _as_number(self, v: _Values, node: ast.AST, other: _Values | None = None) -> _Values:
        """A text column read as numbers (blanks missing); text that is not a number errs."""
        if not isinstance(node, ast.Name):  # a text constant against a number
            shown = v.values if isinstance(v.values, str) else "text"
            raise RuleError(f"{shown!r} is text, compared with a number")
        key = (node.id, "num")
        if key in self._cache:
            return self._cache[key]
        raw = pd.Series(v.values)
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
        if bad.any():
            raise RuleError(
                f"column {node.id!r} holds text (e.g. {raw[bad].iloc[0]!r}), compared with a number"
            )
        out = _Values("num", num.to_numpy(dtype=float), num.isna().to_numpy())
        self._cache[key] = out
        return out

    # -- values
    def value(self, node: ast.AST) -> _Values:
        const = _constant(node)
        if const is not None:
            c = const[0]
            if isinstance(c, str):
                return _Values("text", c.strip())
            return _Values("bool" if isinstance(c, bool) else "num", float(c))
        if isinstance(node, ast.Name):
            return self.column(node.id)
        if isinstance(node, ast.UnaryOp):  # - column
            v = self._numeric(node.operand)
            return _Values("num", -v.values if isinstance(node.op, ast.USub) else v.values,
                           v.missing)  # fmt: skip
        if isinstance(node, ast.BinOp):
            a, b = self._numeric(node.left), self._numeric(node.right)
            with np.errstate(divide="ignore", invalid="ignore"):
                out = np.asarray(_ARITH[type(node.op)](a.values, b.values), dtype=float)
            missing = np.broadcast_to(a.missing, (self.n,)) | np.broadcast_to(b.missing, (self.n,))
            return _Values("num", out, missing | ~np.isfinite(np.broadcast_to(out, (self.n,))))
        # comparisons and and/or/not used as values: true/false per row
        return _Values("bool", self.truth(node).astype(float))

    def _numeric(self, node: ast.AST) -> _Values:
        v = self.value(node)
        if v.kind == "text":
            return self._as_number(v, node)
        return v

    def column(self, name: str) -> _Values:
        key = (name, "raw")
        if key in self._cache:
            return self._cache[key]
        raw = self.table[name]
        if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
            values = raw.to_numpy(dtype=float, na_value=np.nan)
            out = _Values("num", values, np.isnan(values))
        else:
            text = raw.astype("string").str.strip()
            missing = (text.isna() | (text == "")).to_numpy()
            out = _Values("text", text.fillna("").to_numpy(dtype=object), missing)
        self._cache[key] = out
        return out


def _name(node: ast.AST) -> str:
    return f"column {node.id!r}" if isinstance(node, ast.Name) else "a number"


def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
