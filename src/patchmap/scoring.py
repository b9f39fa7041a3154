"""Scoring: a fit score and revenue potential per account, and an engagement ``reach``.

- ``p_win``: probability of winning the account if it is worked, learnt from the decided
  (won/lost) deals. With enough history (at least ``min_labelled`` won/lost rows, both
  classes), a look-alike model learns it from firmographic and technographic columns
  (:class:`LookalikeScorer`: a cross-validated choice between gradient boosting and a
  spline logistic regression); otherwise documented rules stand in
  (:class:`RulesScorer`) and the model card says why.
- ``score`` = 100 * ``p_win`` (0-100). Kept on the probability scale, not as a percentile, so
  sums mean something: a unit's summed score / 100 is its expected number of wins.
- ``potential`` = ``p_win`` * expected deal size (a regressor trained on won deals, or
  the median won deal when there are too few).
- ``reach``: a 0-100 composite of engagement (MQLs, opportunities, intent, product usage).

Accounts that already carry ``score`` / ``reach`` (or ``p_win`` / ``potential``) keep them.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from patchmap.errors import InputError
from patchmap.io import atomic_path, write_csv, write_text
from patchmap.notes import Note
from patchmap.options import SCORING_MODELS

__all__ = [
    "DEFAULT_REACH_WEIGHTS",
    "LookalikeScorer",
    "RulesScorer",
    "RulesWeights",
    "ScoreResult",
    "ScoringConfig",
    "model_card_path",
    "reach",
    "score_accounts",
    "scoring_config",
    "write_scored",
]

#: Engagement column -> weight in ``reach``. Used when ``reach_columns`` is None: a column
#: whose name contains the key (``mql`` matches ``mqls_90d``) gets that weight.
DEFAULT_REACH_WEIGHTS: dict[str, float] = {
    "mql": 0.30,
    "opportunit": 0.30,
    "intent": 0.25,
    "usage": 0.15,
}
#: Substrings of column names that mark engagement (reach, never a model feature).
ENGAGEMENT_PATTERNS = (
    "mql",
    "opportunit",
    "intent",
    "usage",
    "engagement",
    "visit",
    "pageview",
    "email_open",
    "click",
    "meeting",
    "webinar",
    "sql_",
)
#: Columns never used as features: identifiers, location, and what is derived from the outcome.
#: ``status`` = 'customer' exactly when the account was won, so it restates the label; the
#: others (stage, close dates, churn, ARR, the deal size...) exist only after a deal is
#: decided. ``deal_size`` is listed even when ``ScoringConfig.deal_size`` names another
#: column or None: it is given for exactly the won/lost rows, never for the rows to score.
LEAKAGE_COLUMNS = (
    "status",
    "stage",
    "deal_stage",
    "is_customer",
    "customer",
    "customer_since",
    "close_date",
    "closed_date",
    "won_date",
    "lost_date",
    "closed",
    "is_won",
    "won",
    "lost",
    "churned",
    "arr",
    "mrr",
    "contract_value",
    "acv",
    "tcv",
    "deal_size",
    "win_reason",
    "loss_reason",
    "lost_reason",
)
NON_FEATURES = (
    "account_id",
    "name",
    "company",
    "account_name",
    "city",
    "state",
    "zip",
    "zcta",
    "county",
    "address",
    "street",
    "lat",
    "lon",
    "latitude",
    "longitude",
    "location_source",
    "source_row",
    "row",
    "unit_id",
    "territory",
    "owner",
    "rep",
    "email",
    "phone",
    "website",
    "domain",
    "p_win",
    "score",
    "reach",
    "potential",
    "expected_deal_size",
)
POSITIVE = ("won", "closed won", "closed-won", "closed_won", "win", "1", "true", "yes")
NEGATIVE = ("lost", "closed lost", "closed-lost", "closed_lost", "loss", "0", "false", "no")
UNDECIDED = ("", "nan", "none", "null", "n/a", "na", "open", "pending")
MAX_CATEGORIES = 50


@dataclass
class RulesWeights:
    """Points for the rules score, for teams without won/lost history.

    Defaults: industry points (software and financial services fit best), an employee
    band curve peaking at mid-market (50-999), a revenue band curve, and technographic
    flags. ``score`` = 100 * points / the most points possible from the columns present.
    """

    industry_column: str = "industry"
    industry_points: Mapping[str, float] = field(
        default_factory=lambda: {
            "software": 25,
            "financial services": 20,
            "professional services": 15,
            "healthcare": 15,
            "manufacturing": 12,
            "logistics": 10,
            "construction": 6,
            "retail": 5,
            "education": 3,
        }
    )
    other_industry_points: float = 8
    employees_column: str = "employees"
    #: (lower bound, points): the band of a value is the last bound <= value
    employee_bands: Sequence[tuple[float, float]] = (
        (0, 5),
        (10, 15),
        (50, 25),
        (250, 25),
        (1000, 15),
    )
    revenue_column: str = "annual_revenue"
    revenue_bands: Sequence[tuple[float, float]] = (
        (0, 5),
        (1e6, 10),
        (1e7, 20),
        (1e8, 20),
        (1e9, 12),
    )
    flag_points: Mapping[str, float] = field(
        default_factory=lambda: {"uses_crm": 15, "uses_cloud": 10}
    )


@dataclass
class ScoringConfig:
    """Which columns mean what, and how to score.

    Features (``features=None``): every numeric or low-cardinality text column except the
    outcome, the deal size, engagement columns (they make up ``reach``), identifiers and
    location, and columns derived from the outcome (:data:`LEAKAGE_COLUMNS`: ``status`` is
    'customer' exactly when the deal was won, so training on it would learn the label
    itself). A text column that alone separates won from lost perfectly is dropped as
    leakage too, and noted.
    """

    outcome: str = "outcome"
    positive: str = "won"
    negative: str = "lost"
    deal_size: str | None = "deal_size"
    size_model: bool = True  # a regressor on won deals predicts each account's deal size
    features: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    model: str = "auto"  # 'auto' (best cross-validated AUC), 'gbm', 'logistic' or 'rules'
    min_labelled: int = 50
    cv_folds: int = 5
    max_train: int = 100_000  # labelled rows used to fit (a stratified sample beyond)
    max_cv: int = 20_000  # labelled rows used for cross-validation
    rules: RulesWeights = field(default_factory=RulesWeights)
    reach_columns: Mapping[str, float] | None = None  # column -> weight; None: by name
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in SCORING_MODELS:
            *first, last = (repr(m) for m in SCORING_MODELS)
            raise InputError(
                f"scoring: model must be {', '.join(first)} or {last}, got {self.model!r}"
            )
        if self.cv_folds < 2:
            raise InputError(f"scoring: cv_folds must be at least 2, got {self.cv_folds}")


def scoring_config(options: ScoringConfig | Mapping[str, Any] | None = None) -> ScoringConfig:
    """A :class:`ScoringConfig` from a plan file's ``[scoring]`` table (or keyword mapping).

    Keys are :class:`ScoringConfig` fields; ``rules`` may be a sub-table of
    :class:`RulesWeights` fields. A ScoringConfig is returned as it is, None or an empty
    table gives the defaults. An unknown key raises a one-line InputError.
    """
    if isinstance(options, ScoringConfig):
        return options
    if not options:
        return ScoringConfig()
    kwargs = dict(options)
    try:
        if isinstance(kwargs.get("rules"), Mapping):
            kwargs["rules"] = RulesWeights(**kwargs["rules"])
        return ScoringConfig(**kwargs)
    except TypeError as exc:
        raise InputError(f"[scoring]: {exc}") from None


@dataclass
class ScoreResult:
    """Scored accounts (``p_win``, ``score``, ``potential``, ``reach`` added), model card, notes."""

    accounts: pd.DataFrame
    model_card: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    model: Any = None


# ------------------------------------------------------------------ helpers


def _rows(df: pd.DataFrame) -> np.ndarray:
    if "source_row" in df.columns:
        return pd.to_numeric(df["source_row"], errors="coerce").fillna(0).astype("int64").to_numpy()
    return np.arange(1, len(df) + 1)


def text_values(s: pd.Series, *, lower: bool = False) -> np.ndarray:
    """Stripped (optionally lower-cased) text of a column as an object array, None for NA.

    String work runs once per distinct value (``pd.factorize``), not once per row: with
    pandas' Arrow strings that is the difference between 0.1 s and 10 s at a million rows.
    """
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    u = pd.Series(np.asarray(uniques, dtype=object)).astype("string").str.strip()
    u = (u.str.lower() if lower else u).to_numpy(dtype=object, na_value=None)
    if u.size == 0:
        return np.full(len(s), None, dtype=object)
    return np.where(codes >= 0, u[np.maximum(codes, 0)], None)


def blank(s: pd.Series) -> np.ndarray:
    """True where a value is missing or empty text."""
    t = text_values(s)
    return pd.isna(t) | (t == "")


def numeric_column(df: pd.DataFrame, col: str, what: str) -> pd.Series:
    """Column as float; any non-empty value that is not a number raises InputError."""
    raw = df[col]
    if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
        return raw.astype("float64")
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = values.isna().to_numpy() & ~blank(raw)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"accounts: {what} column {col!r} must be numeric (row {_rows(df)[i]}: {raw.iloc[i]!r})"
        )
    return values


def _norm_label(s: pd.Series) -> pd.Series:
    """Lower-cased labels with '1.0' read as '1' and inner whitespace collapsed ('' for NA)."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    u = pd.Series(np.asarray(uniques, dtype=object)).astype("string").str.strip().str.lower()
    u = u.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True).str.replace(r"\s+", " ", regex=True)
    u = u.fillna("").to_numpy(dtype=object)
    out = np.where(codes >= 0, u[np.maximum(codes, 0)] if u.size else "", "")
    return pd.Series(out, index=s.index, dtype=object)


def parse_outcome(df: pd.DataFrame, config: ScoringConfig) -> pd.Series:
    """Outcome as 1 (won), 0 (lost) or NA (never decided); other labels raise InputError."""
    col = config.outcome
    labels = _norm_label(df[col])
    pos = {config.positive.lower(), *POSITIVE}
    neg = {config.negative.lower(), *NEGATIVE}
    y = pd.Series(pd.NA, index=df.index, dtype="Int8")
    y[labels.isin(pos)] = 1
    y[labels.isin(neg)] = 0
    bad = ~labels.isin(pos | neg | set(UNDECIDED))
    if bad.any():
        rows = _rows(df)[bad.to_numpy()]
        values = pd.unique(df[col][bad].astype("string"))[:3]
        raise InputError(
            f"accounts: column {col!r} has {int(bad.sum())} unknown outcome labels "
            f"(rows {', '.join(map(str, rows[:3]))}{'...' if bad.sum() > 3 else ''}: "
            f"{', '.join(repr(str(v)) for v in values)}); expected {config.positive!r}/"
            f"{config.negative!r} (or closed won/closed lost, win/loss, 1/0, true/false) or empty"
        )
    return y


def _is_engagement(col: str) -> bool:
    c = col.lower()
    return any(p in c for p in ENGAGEMENT_PATTERNS)


def reach_weights(df: pd.DataFrame, config: ScoringConfig) -> dict[str, float]:
    """Engagement column -> weight: ``config.reach_columns`` or matched by name."""
    if config.reach_columns is not None:
        return {c: float(w) for c, w in config.reach_columns.items() if c in df.columns}
    out: dict[str, float] = {}
    for key, w in DEFAULT_REACH_WEIGHTS.items():
        for col in df.columns:
            if key in str(col).lower() and col not in out and col not in NON_FEATURES:
                out[col] = w
                break
    return out


def engagement(df: pd.DataFrame, col: str) -> np.ndarray:
    """An engagement column as :func:`reach` reads it: numeric, not negative, missing = 0.

    Non-numeric or negative values raise InputError naming the column and first bad row.
    """
    x = numeric_column(df, col, "engagement").to_numpy()
    neg = x < 0
    if neg.any():
        i = int(np.argmax(neg))
        raise InputError(
            f"accounts: engagement column {col!r} must not be negative "
            f"(row {_rows(df)[i]}: {x[i]!r})"
        )
    return np.nan_to_num(x, nan=0.0)


def reach(
    df: pd.DataFrame, weights: Mapping[str, float], tops: Mapping[str, float] | None = None
) -> np.ndarray:
    """Engagement composite, 0-100.

    Each column is log-normalized, ``log1p(x) / log1p(p99)`` clipped to [0, 1] (0 stays 0,
    one outlier cannot flatten everyone else, counts and 0-100 scales become comparable);
    missing counts as 0 (no usage is no engagement). The weighted mean is scaled to 0-100.
    Non-numeric or negative values raise InputError naming the column and first bad row.

    ``tops``: column -> normaliser to use instead of this table's own p99 (its maximum when
    the p99 is 0), e.g. the whole table's when ``df`` is one partition of it.
    """
    if not weights:
        return np.zeros(len(df))
    total = np.zeros(len(df))
    wsum = 0.0
    for col, w in weights.items():
        x = engagement(df, col)
        if tops is not None:
            top = tops[col]
        else:
            top = reach_top(float(np.quantile(x, 0.99)) if x.size else 0.0, x.max(initial=0.0))
        norm = np.clip(np.log1p(x) / math.log1p(top), 0, 1) if top > 0 else np.zeros_like(x)
        total += w * norm
        wsum += w
    return np.round(100 * total / wsum, 2) if wsum > 0 else total


def reach_top(p99: float, largest: float) -> float:
    """The normaliser of one engagement column in :func:`reach`: its 99th percentile, or
    its largest value when the percentile is 0 (most accounts without any)."""
    return p99 if p99 > 0 else max(float(largest), 0.0)


def _feature_columns(
    df: pd.DataFrame, config: ScoringConfig, y: pd.Series | None, notes: list[str]
) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns, auto-detected unless ``config.features``."""
    reach_cols = set(reach_weights(df, config))
    excluded = {config.outcome, config.deal_size, *config.exclude, *reach_cols}
    if config.features is not None:
        missing = [c for c in config.features if c not in df.columns]
        if missing:
            raise InputError(f"accounts: feature column {missing[0]!r} not found")
        leaky = [c for c in config.features if c in excluded or c.lower() in LEAKAGE_COLUMNS]
        if leaky:
            raise InputError(
                f"scoring: feature {leaky[0]!r} is the outcome, the deal size, "
                "engagement or derived from the outcome (leakage)"
            )
        candidates = list(config.features)
    else:
        candidates = [
            c
            for c in df.columns
            if c not in excluded
            and str(c).lower() not in NON_FEATURES
            and str(c).lower() not in LEAKAGE_COLUMNS
            and not _is_engagement(str(c))
        ]
    numeric: list[str] = []
    categorical: list[str] = []
    labelled = y.notna().to_numpy() if y is not None else None
    for col in candidates:
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            if s.notna().any():
                numeric.append(col)
            continue
        given = ~blank(s)
        head = s[given].iloc[:1000]  # numbers stored as text? look at a few first
        if (
            given.any()
            and pd.to_numeric(head, errors="coerce").notna().mean() >= 0.95
            and pd.to_numeric(s[given], errors="coerce").notna().mean() >= 0.95
        ):
            numeric.append(col)
            continue
        nunique = s.nunique(dropna=True)
        if 2 <= nunique <= MAX_CATEGORIES and nunique < 0.5 * max(len(s), 1):
            if (
                labelled is not None
                and labelled.sum() >= 20
                and _separates(s[labelled], y[labelled])
            ):
                notes.append(
                    Note(
                        "leakage_column",
                        f"column {col!r} alone separates won from lost: left out as leakage",
                        column=col,
                    )
                )
                continue
            categorical.append(col)
    return numeric, categorical


def _separates(x: pd.Series, y: pd.Series) -> bool:
    """True when every value of ``x`` comes with a single outcome (and both outcomes occur)."""
    if y.nunique() < 2:
        return False
    per_value = (
        pd.DataFrame(
            {"x": x.astype("string").fillna("<NA>").to_numpy(), "y": y.astype("int64").to_numpy()}
        )
        .groupby("x")["y"]
        .nunique()
    )
    return bool((per_value == 1).all() and len(per_value) >= 2)


def _frame(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Model input: numerics as float, categoricals as plain strings ('missing' for NA)."""
    out = {c: pd.to_numeric(df[c], errors="coerce").astype("float64").to_numpy() for c in numeric}
    for c in categorical:
        t = text_values(df[c])
        out[c] = np.where(pd.isna(t), "missing", t)
    return pd.DataFrame(out, index=df.index)


# ------------------------------------------------------------------ rules


class RulesScorer:
    """Score from documented points (see :class:`RulesWeights`), for teams without history."""

    def __init__(self, weights: RulesWeights | None = None) -> None:
        self.weights = weights or RulesWeights()

    @staticmethod
    def _bands(x: np.ndarray, bands: Sequence[tuple[float, float]]) -> np.ndarray:
        bounds = np.array([b for b, _ in bands], dtype="float64")
        pts = np.array([p for _, p in bands], dtype="float64")
        idx = np.searchsorted(bounds, x, side="right") - 1
        return np.where(np.isnan(x) | (idx < 0), 0.0, pts[np.clip(idx, 0, None)])

    def score(self, df: pd.DataFrame, notes: list[str] | None = None) -> np.ndarray:
        """0-100 rules score: 100 * points / the most points the present columns can give."""
        w = self.weights
        notes = notes if notes is not None else []
        points = np.zeros(len(df))
        best = 0.0
        if w.industry_column in df.columns:
            ind = pd.Series(text_values(df[w.industry_column], lower=True))
            table = {k.lower(): float(v) for k, v in w.industry_points.items()}
            pts = ind.map(table).astype("float64").fillna(w.other_industry_points)
            points += np.where(ind.isna().to_numpy(), 0.0, pts.to_numpy())
            best += max([*table.values(), w.other_industry_points])
        else:
            notes.append(
                Note(
                    "rules_skipped",
                    f"rules: no {w.industry_column!r} column, industry points skipped",
                    column=w.industry_column,
                )
            )
        for col, bands, what in (
            (w.employees_column, w.employee_bands, "employee"),
            (w.revenue_column, w.revenue_bands, "revenue"),
        ):
            if col in df.columns:
                x = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype="float64")
                points += self._bands(x, bands)
                best += max(p for _, p in bands)
            else:
                notes.append(
                    Note(
                        "rules_skipped",
                        f"rules: no {col!r} column, {what} band points skipped",
                        column=col,
                    )
                )
        for col, p in w.flag_points.items():
            if col in df.columns:
                flag = _norm_label(df[col]).isin(["1", "true", "yes", "y"]).to_numpy()
                points += np.where(flag, float(p), 0.0)
                best += float(p)
        return np.round(100 * points / best, 2) if best > 0 else np.zeros(len(df))


# ------------------------------------------------------------------ look-alike model


def _pipeline(kind: str, numeric: list[str], categorical: list[str], skewed: list[str], seed: int):
    """Preprocessing + model as one sklearn Pipeline, fed the raw feature columns.

    ``gbm``: log1p of skewed money/size columns, other numerics as they are (missing values
    handled natively), one-hot categoricals; HistGradientBoostingClassifier.
    ``logistic``: the log1p'd skewed columns expanded in cubic splines (fit is rarely
    monotone in company size: mid-market often wins most), other numerics scaled, missing
    indicators, one-hot categoricals; LogisticRegression. ``ridge``: the same features,
    Ridge regression (the deal-size model, on log deal size).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        OneHotEncoder,
        SplineTransformer,
        StandardScaler,
    )

    plain = [c for c in numeric if c not in skewed]
    log = FunctionTransformer(_signed_log1p, feature_names_out="one-to-one")
    onehot = OneHotEncoder(
        handle_unknown="infrequent_if_exist", min_frequency=5, sparse_output=False
    )
    if kind == "gbm":
        pre = ColumnTransformer(
            [
                ("log", log, skewed),
                ("num", "passthrough", plain),
                ("cat", onehot, categorical),
            ],
            verbose_feature_names_out=False,
        )
        model = HistGradientBoostingClassifier(
            max_iter=60,
            learning_rate=0.12,
            max_leaf_nodes=15,
            min_samples_leaf=40,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed,
        )
    else:
        pre = ColumnTransformer(
            [
                (
                    "log",
                    make_pipeline(
                        SimpleImputer(strategy="median"),
                        log,
                        SplineTransformer(n_knots=5, degree=3),
                        StandardScaler(),
                    ),
                    skewed,
                ),
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), plain),
                # error_on_new=False: a column complete in the rows fitted on may still have
                # gaps in the rows predicted (the unlabelled accounts); the imputers fill them
                ("missing", MissingIndicator(features="missing-only", error_on_new=False), numeric),
                ("cat", onehot, categorical),
            ],
            verbose_feature_names_out=False,
        )
        model = Ridge(alpha=1.0) if kind == "ridge" else LogisticRegression(C=1.0, max_iter=1000)
    return Pipeline([("prepare", pre), ("model", model)])


def _signed_log1p(x):
    """log1p that keeps the sign (money and sizes are skewed; a few may be negative)."""
    x = np.asarray(x, dtype="float64")
    return np.sign(x) * np.log1p(np.abs(x))


def _skewed(X: pd.DataFrame, numeric: list[str]) -> list[str]:
    """Numeric columns worth a log: many distinct values and a long right tail."""
    out = []
    for c in numeric:
        v = X[c].dropna().to_numpy()
        if v.size < 3 or np.unique(v[:10_000]).size <= 10:
            continue
        if pd.Series(v).skew() > 2:
            out.append(c)
    return out


def _stratified_sample(idx: np.ndarray, y: np.ndarray, n: int, seed: int) -> np.ndarray:
    if idx.size <= n:
        return idx
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(idx, train_size=n, stratify=y, random_state=seed)
    return np.sort(keep)


class LookalikeScorer:
    """P(win) from firmographics and technographics, learnt from won/lost history.

    scikit-learn style: parameters in the constructor (a :class:`ScoringConfig`),
    ``fit(accounts)`` trains and returns a :class:`ScoreResult` for every account. With
    ``model='auto'`` it cross-validates a gradient-boosting and a logistic model and keeps
    the better ROC AUC. Too little history (< ``min_labelled`` rows or one class only)
    falls back to :class:`RulesScorer`, and the model card and notes say why.

    Fitted deal size (:meth:`predict_deal_size`): ``size_model_``, a regressor of log deal
    size, and ``size_smear_``, Duan's smearing factor that turns its exp back into a mean;
    without a size model, the constant ``deal_size_`` (the median won deal, or 1).
    """

    def __init__(self, config: ScoringConfig | None = None) -> None:
        self.config = config or ScoringConfig()
        self.pipeline_ = None
        self.size_model_ = None
        self.size_smear_ = 1.0
        self.deal_size_ = 1.0
        self.features_: tuple[list[str], list[str]] = ([], [])

    def input_columns(self) -> set[str]:
        """The account columns the fitted scorer reads: its features and the rules' columns
        (the rules stand in after a fallback)."""
        rules = self.config.rules
        return {
            *self.features_[0], *self.features_[1], rules.industry_column,
            rules.employees_column, rules.revenue_column, *rules.flag_points,
        }  # fmt: skip

    def predict_proba(self, accounts: pd.DataFrame) -> np.ndarray:
        """``p_win`` for new accounts with the fitted model (or the rules after a fallback)."""
        if self.pipeline_ is None:
            return RulesScorer(self.config.rules).score(accounts) / 100
        numeric, categorical = self.features_
        missing = [c for c in numeric + categorical if c not in accounts.columns]
        if missing:
            raise InputError(f"accounts: feature column {missing[0]!r} not found")
        return self.pipeline_.predict_proba(_frame(accounts, numeric, categorical))[:, 1]

    def predict_deal_size(self, accounts: pd.DataFrame) -> np.ndarray:
        """Expected deal size of each account, as :meth:`fit` multiplies ``p_win`` by for
        ``potential``: exp(``size_model_``) x ``size_smear_``, or else ``deal_size_``."""
        if self.size_model_ is None:
            return np.full(len(accounts), self.deal_size_)
        X = _frame(accounts, *self.features_)
        with _threads(len(X)):
            return np.exp(self.size_model_.predict(X)) * self.size_smear_

    def fit(self, accounts: pd.DataFrame) -> ScoreResult:
        """Train on labelled rows, predict ``p_win``, ``score``, ``potential`` for all rows."""
        cfg = self.config
        df = accounts.reset_index(drop=True)
        notes: list[str] = []
        card: dict[str, Any] = {"seed": cfg.seed, "n_accounts": len(df)}
        y = parse_outcome(df, cfg) if cfg.outcome in df.columns else None
        if y is None:
            notes.append(
                Note(
                    "no_outcome",
                    f"no {cfg.outcome!r} column: no won/lost history to learn from",
                    column=cfg.outcome,
                )
            )
        numeric, categorical = _feature_columns(df, cfg, y, notes)
        self.features_ = (numeric, categorical)
        card["features"] = numeric + categorical
        card["excluded_as_leakage"] = [c for c in df.columns if str(c).lower() in LEAKAGE_COLUMNS]
        X = _frame(df, numeric, categorical)
        sizes = self._deal_sizes(df, X, y, numeric, categorical, notes, card)

        n_pos = int((y == 1).sum()) if y is not None else 0
        n_neg = int((y == 0).sum()) if y is not None else 0
        card.update({"n_train": n_pos + n_neg, "class_balance": {"won": n_pos, "lost": n_neg}})
        reason = None
        if cfg.model == "rules":
            reason = "rules chosen in the configuration"
        elif y is None:
            reason = f"no {cfg.outcome!r} column"
        elif n_pos + n_neg < cfg.min_labelled:
            reason = f"only {n_pos + n_neg} won/lost rows (need at least {cfg.min_labelled})"
        elif min(n_pos, n_neg) == 0:
            reason = f"one class only ({n_pos} won, {n_neg} lost)"
        elif min(n_pos, n_neg) < cfg.cv_folds:
            reason = f"too few of one class for {cfg.cv_folds}-fold validation ({n_pos} won, {n_neg} lost)"
        elif not numeric and not categorical:
            reason = "no usable feature columns"
        if reason is not None:
            notes.append(
                Note(
                    "rules_fallback",
                    f"look-alike model not trained: {reason}; scored with rules instead "
                    "(p_win = rules score / 100: a ranking, not a calibrated probability)",
                    reason=reason,
                )
            )
            card.update(
                {"model": "rules", "fallback_reason": reason, "rules": _jsonable(asdict(cfg.rules))}
            )
            p_win = RulesScorer(cfg.rules).score(df, notes) / 100
        else:
            p_win = self._fit_model(X, y, numeric, categorical, card, notes)
        out = df.copy()
        for col, values in score_columns(p_win, sizes).items():
            out[col] = values
        return ScoreResult(accounts=out, model_card=card, notes=notes, model=self.pipeline_)

    # -- deal size -------------------------------------------------------
    def _deal_sizes(self, df, X, y, numeric, categorical, notes, card) -> np.ndarray:
        """Expected deal size per account: size model, else the median won deal, else 1."""
        cfg = self.config
        self.size_model_, self.size_smear_, self.deal_size_ = None, 1.0, 1.0
        col = cfg.deal_size
        if not col or col not in df.columns:
            what = f"no deal size column {col!r}" if col else "no deal size column configured"
            notes.append(
                Note("no_deal_size", f"{what}: potential = p_win (expected wins)", column=col)
            )
            card["deal_size"] = {"method": "none (1 per account)"}
            return np.ones(len(df))
        size = numeric_column(df, col, "deal size")
        won = size.notna() & (size > 0)
        if y is not None:
            won &= (y == 1).fillna(False)
        n_won = int(won.sum())
        if n_won == 0:
            notes.append(
                Note(
                    "no_deal_size",
                    f"no won deals with a {col!r}: potential = p_win (expected wins)",
                    column=col,
                )
            )
            card["deal_size"] = {"method": "none (1 per account)"}
            return np.ones(len(df))
        median = self.deal_size_ = float(size[won].median())
        if not cfg.size_model or n_won < 30 or not (numeric or categorical):
            card["deal_size"] = {"method": "median won deal", "value": median, "n_won": n_won}
            return np.full(len(df), median)
        from sklearn.model_selection import cross_val_score

        skewed = _skewed(X, numeric)
        pipe = _pipeline("ridge", numeric, categorical, skewed, cfg.seed)
        idx = np.nonzero(won.to_numpy())[0]
        if idx.size > cfg.max_train // 2:
            idx = np.sort(
                np.random.default_rng(cfg.seed).choice(idx, cfg.max_train // 2, replace=False)
            )
        idx = idx[np.random.default_rng(cfg.seed).permutation(idx.size)]  # shuffled for the CV
        target = np.log(size.to_numpy()[idx])
        cv_idx = idx[: cfg.max_cv] if idx.size > cfg.max_cv else idx
        with _threads(0):
            r2 = cross_val_score(pipe, X.iloc[cv_idx], target[: cv_idx.size], cv=3, scoring="r2")
            pipe.fit(X.iloc[idx], target)
            resid = target - pipe.predict(X.iloc[idx])
        with _threads(len(X)):
            predicted = pipe.predict(X)
        smear = float(np.mean(np.exp(resid)))  # Duan's smearing: mean, not median, of exp(log)
        card["deal_size"] = {
            "method": "ridge regression on log(deal size) of won deals",
            "n_won": n_won,
            "cv_r2_log": round(float(r2.mean()), 4),
            "median_won": median,
        }
        if r2.mean() <= 0:
            notes.append(
                Note(
                    "size_model_dropped",
                    f"deal size model explains nothing (cv R² {r2.mean():.2f}): median won "
                    "deal used",
                    cv_r2_log=float(r2.mean()),
                )
            )
            card["deal_size"]["method"] = "median won deal (size model had no skill)"
            return np.full(len(df), median)
        self.size_model_, self.size_smear_ = pipe, smear
        return np.exp(predicted) * smear

    # -- win model -------------------------------------------------------
    def _fit_model(self, X, y, numeric, categorical, card, notes) -> np.ndarray:
        from sklearn.inspection import permutation_importance
        from sklearn.model_selection import StratifiedKFold, cross_validate

        cfg = self.config
        lab = np.nonzero(y.notna().to_numpy())[0]
        yl = y.to_numpy(dtype="float64", na_value=np.nan)[lab].astype("int64")
        skewed = _skewed(X.iloc[lab], numeric)
        cv_idx = _stratified_sample(np.arange(lab.size), yl, cfg.max_cv, cfg.seed)
        folds = StratifiedKFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed)
        kinds = ["gbm", "logistic"] if cfg.model == "auto" else [cfg.model]
        cv: dict[str, dict] = {}
        Xcv, ycv = X.iloc[lab[cv_idx]], yl[cv_idx]
        with _threads(0):
            for kind in kinds:
                pipe = _pipeline(kind, numeric, categorical, skewed, cfg.seed)
                cv[kind] = cross_validate(
                    pipe,
                    Xcv,
                    ycv,
                    cv=folds,
                    scoring="roc_auc",
                    return_estimator=True,
                    return_indices=True,
                )
        best = max(
            kinds, key=lambda k: (round(float(cv[k]["test_score"].mean()), 3), k == "logistic")
        )
        fit_idx = _stratified_sample(np.arange(lab.size), yl, cfg.max_train, cfg.seed)
        pipe = _pipeline(best, numeric, categorical, skewed, cfg.seed)
        with _threads(0):
            pipe.fit(X.iloc[lab[fit_idx]], yl[fit_idx])
        with _threads(len(X)):
            p_win = pipe.predict_proba(X)[:, 1]
        with _threads(0):
            # permutation importance of the original columns, on the last fold's held-out rows
            est = cv[best]["estimator"][-1]
            test = cv[best]["indices"]["test"][-1][:3000]
            imp = permutation_importance(
                est,
                Xcv.iloc[test],
                ycv[test],
                scoring="roc_auc",
                n_repeats=3,
                random_state=cfg.seed,
            )
        self.pipeline_ = pipe
        order = np.argsort(-imp.importances_mean)
        top = [
            {"feature": X.columns[i], "importance": round(float(imp.importances_mean[i]), 4)}
            for i in order[:10]
        ]
        scores = cv[best]["test_score"]
        card.update(
            {
                "model": {
                    "gbm": "HistGradientBoostingClassifier",
                    "logistic": "LogisticRegression",
                }[best],
                "cv_auc_mean": round(float(scores.mean()), 4),
                "cv_auc_std": round(float(scores.std()), 4),
                "cv_folds": cfg.cv_folds,
                "cv_rows": int(cv_idx.size),
                "fit_rows": int(fit_idx.size),
                "candidates": {k: round(float(v["test_score"].mean()), 4) for k, v in cv.items()},
                "log_features": skewed,
                "top_features": top,
                "importance": "permutation importance (drop in ROC AUC) on a held-out fold",
                "fallback_reason": None,
            }
        )
        notes.append(
            Note(
                "model",
                f"look-alike model {card['model']}: {cfg.cv_folds}-fold ROC AUC "
                f"{card['cv_auc_mean']:.3f} ± {card['cv_auc_std']:.3f} on {lab.size} won/lost "
                "rows",
                model=card["model"],
                cv_auc_mean=card["cv_auc_mean"],
                cv_auc_std=card["cv_auc_std"],
                n_train=int(lab.size),
            )
        )
        if card["cv_auc_mean"] >= LEAKAGE_AUC:
            warning = leakage_warning(X.iloc[lab], yl, card["cv_auc_mean"])
            card["leakage_warning"] = warning
            notes.append(Note("leakage_warning", warning, cv_auc_mean=card["cv_auc_mean"]))
        return p_win


#: A cross-validated AUC this high on real sales data means the outcome leaked in.
LEAKAGE_AUC = 0.99


def leakage_warning(X: pd.DataFrame, y: np.ndarray, auc: float) -> str:
    """Say why a near-perfect model is suspect, naming the features that are filled for one
    outcome only (e.g. a ``renewal_amount`` known only for won deals)."""
    one_sided = []
    for col in X.columns:
        filled = X[col].notna().to_numpy()
        won, lost = (
            filled[y == 1].mean() if (y == 1).any() else 0,
            filled[y == 0].mean() if (y == 0).any() else 0,
        )
        if abs(won - lost) >= 0.9:
            one_sided.append(f"{col} ({100 * won:.0f}% filled for won, {100 * lost:.0f}% for lost)")
    which = (
        "; features that exist for one outcome only: " + ", ".join(one_sided[:5])
        if one_sided
        else "; look for a feature derived from the outcome"
    )
    return (
        f"probable leakage: ROC AUC {auc:.3f} is near perfect{which}. Drop such columns "
        "(or score with the rules model) before trusting the scores"
    )


def _threads(n_rows: int):
    """Native threads (OpenMP, BLAS): one to fit, all to predict a large table.

    Fits here are small; on a busy machine gradient boosting's and BLAS's threads spin-wait
    on each other (a 20k-row fit took 3.2 s on two threads, 0.5 s on one). Predicting a
    large table splits into independent rows and gains from every core.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=None if n_rows >= 200_000 else 1)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ------------------------------------------------------------------ top level


def score_columns(p_win: np.ndarray, deal_size: np.ndarray) -> dict[str, np.ndarray]:
    """``p_win``, ``score`` (100 x p_win) and ``potential`` (p_win x expected deal size), as
    every engine writes them (rounded once, here)."""
    p_win = np.asarray(p_win, dtype="float64")
    return {
        "p_win": np.round(p_win, 6),
        "score": np.round(100 * p_win, 2),
        "potential": np.round(p_win * deal_size, 2),
    }


def kept_note(col: str) -> Note:
    """A measure the accounts already carry, kept as given."""
    return Note("kept_column", f"accounts already carry {col!r}: kept as given, not rescored",
                column=col)  # fmt: skip


def reach_note(weights: Mapping[str, float]) -> Note:
    """How ``reach`` was made from the engagement columns (or that there were none)."""
    if not weights:
        return Note("reach", "no engagement columns (mqls, opportunities, intent, usage): reach = 0",
                    weights={})  # fmt: skip
    return Note(
        "reach",
        "reach = weighted log-normalized " + ", ".join(f"{c} ({w:g})" for c, w in weights.items()),
        weights=dict(weights),
    )


#: Measures an accounts table may already carry: kept as given, not rescored.
MEASURE_COLUMNS = ("score", "reach", "p_win", "potential")


@dataclass(frozen=True)
class ScoringPlan:
    """What scoring does with a table's columns (see :func:`scoring_plan`)."""

    kept: tuple[str, ...]  # measures the accounts carry, kept as given
    weights: dict[str, float]  # engagement column -> weight in reach (empty if reach kept)

    @property
    def needs_model(self) -> bool:
        """False when both ``score`` and ``potential`` are given: nothing left to learn."""
        return not {"score", "potential"} <= set(self.kept)


def scoring_plan(df: pd.DataFrame, config: ScoringConfig) -> ScoringPlan:
    """The measures ``df`` carries and the engagement columns of ``reach``, from its
    columns only (a Dask engine reads them from the dataset's schema)."""
    kept = tuple(c for c in MEASURE_COLUMNS if c in df.columns)
    return ScoringPlan(kept, reach_weights(df, config) if "reach" not in kept else {})


def given_measures(
    df: pd.DataFrame, plan: ScoringPlan, tops: Mapping[str, float] | None = None
) -> dict[str, np.ndarray]:
    """One chunk's measures that need no model, checked: the kept ones as numbers, and
    ``reach`` unless kept (``tops``: the whole table's normalisers, see :func:`reach`)."""
    out = {c: numeric_column(df, c, "existing").to_numpy() for c in plan.kept}
    if "reach" not in plan.kept:
        out["reach"] = reach(df, plan.weights, tops=tops)
    return out


def with_measures(
    df: pd.DataFrame, plan: ScoringPlan, given: Mapping[str, np.ndarray],
    predicted: Mapping[str, np.ndarray] | None,
) -> pd.DataFrame:  # fmt: skip
    """One chunk scored: ``predicted`` (:func:`score_columns` of the fitted model; None when
    no model is needed, and ``p_win`` = score / 100 unless given), then the kept measures
    and ``reach`` from ``given`` (:func:`given_measures`)."""
    if predicted is not None:
        out = df.drop(columns=list(plan.kept))
        for col, values in predicted.items():
            out[col] = values
    else:
        out = df.copy()
        if "p_win" not in plan.kept:
            out["p_win"] = np.clip(given["score"] / 100, 0, 1)
    for col, values in given.items():
        out[col] = values
    return out


def given_card(n_accounts: int) -> dict[str, Any]:
    """The model card when score and potential are given (no model)."""
    return {"model": "given", "n_accounts": n_accounts, "fallback_reason": None}


def scoring_notes(fit_notes: Sequence[str], plan: ScoringPlan) -> list[str]:
    """The fit's notes, then one per kept measure, then how reach was made."""
    notes = [*fit_notes, *(kept_note(c) for c in plan.kept)]
    if "reach" not in plan.kept:
        notes.append(reach_note(plan.weights))
    return notes


def finish_card(card: Mapping[str, Any], plan: ScoringPlan, notes: Sequence[str]) -> dict:
    """The model card as written: the fit's, with reach, score and the notes."""
    card = dict(card)
    card["reach"] = {
        "columns": plan.weights,
        "normalization": "log1p(x)/log1p(p99), clipped to [0,1]",
        "kept_existing": "reach" in plan.kept,
    }
    card["score"] = "100 * p_win" if "score" not in plan.kept else "kept as given"
    card["kept_columns"] = sorted(plan.kept)
    card["notes"] = list(notes)
    return _jsonable(card)


def score_accounts(accounts: pd.DataFrame, config: ScoringConfig | None = None) -> ScoreResult:
    """Add ``p_win``, ``score``, ``potential`` and ``reach`` to every account.

    Existing ``score`` / ``reach`` / ``p_win`` / ``potential`` columns are kept as given
    (validated as numbers), not recomputed; the notes say so. With both ``score`` and
    ``potential`` given no model is trained (``p_win`` = score / 100 if absent).
    The stages of the Dask engine (plan, fit once, score per chunk) on one chunk.
    """
    if not isinstance(accounts, pd.DataFrame):
        raise InputError("accounts: expected a table of accounts")
    if len(accounts) == 0:
        raise InputError("accounts: no rows to score")
    cfg = config or ScoringConfig()
    df = accounts.reset_index(drop=True)
    plan = scoring_plan(df, cfg)
    given = given_measures(df, plan)
    if plan.needs_model:
        fit = LookalikeScorer(cfg).fit(df.drop(columns=list(plan.kept)))
        predicted = {c: fit.accounts[c].to_numpy() for c in ("p_win", "score", "potential")}
    else:
        fit = ScoreResult(accounts=df, model_card=given_card(len(df)))
        predicted = None
    out = with_measures(df, plan, given, predicted)
    notes = scoring_notes(fit.notes, plan)
    card = finish_card(fit.model_card, plan, notes)
    return ScoreResult(accounts=out, model_card=card, notes=notes, model=fit.model)


def model_card_path(out_path: str | os.PathLike) -> Path:
    """``scored.csv`` -> ``scored.model.json`` beside it."""
    p = Path(out_path)
    return p.with_name(
        re.sub(r"\.(csv|parquet|pq|tsv|txt)$", "", p.name, flags=re.I) + ".model.json"
    )


def write_scored(result: ScoreResult, out_path: str | os.PathLike) -> Path:
    """Write scored accounts (CSV, or Parquet by suffix) and the model card JSON, atomically.

    Ingest's row numbers (``source_row``) stay behind: the scored file is an accounts file
    of its own that ``layers``, ``export`` and ``diff`` read (and number) again.
    """
    p = Path(out_path)
    suffix = p.suffix.lower()
    accounts = result.accounts.drop(columns=["source_row"], errors="ignore")
    if suffix in {".parquet", ".pq"}:
        with atomic_path(p) as tmp:
            accounts.to_parquet(tmp, index=False)
    elif suffix in {".csv", ".txt", ""}:
        write_csv(accounts, p)
    else:
        raise InputError(f"{p}: unsupported output type {suffix!r} (use .csv or .parquet)")
    write_text(
        json.dumps(result.model_card, indent=2, sort_keys=False, default=str) + "\n",
        model_card_path(p),
    )
    return p
