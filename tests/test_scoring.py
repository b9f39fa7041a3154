"""Scoring: a real signal is learnt, a shuffled one is not, few labels fall back to rules."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from patchmap.errors import InputError
from patchmap.sample import sample_accounts
from patchmap.scoring import (
    LookalikeScorer,
    RulesScorer,
    ScoringConfig,
    model_card_path,
    reach,
    score_accounts,
    scoring_config,
    write_scored,
)

ADDED = ["p_win", "score", "potential", "reach"]


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return sample_accounts(["RI", "DE", "DC"], n=4000, seed=11)


@pytest.fixture(scope="module")
def scored(sample):
    return score_accounts(sample, ScoringConfig(seed=3))


def test_learns_real_signal(scored, sample):
    card = scored.model_card
    assert card["cv_auc_mean"] > 0.6
    assert card["fallback_reason"] is None
    assert card["n_train"] == int(sample["outcome"].isin(["won", "lost"]).sum())
    assert card["class_balance"]["won"] + card["class_balance"]["lost"] == card["n_train"]
    assert card["model"] in ("HistGradientBoostingClassifier", "LogisticRegression")
    assert {f["feature"] for f in card["top_features"]} <= set(card["features"])
    out = scored.accounts
    assert len(out) == len(sample) and set(ADDED) <= set(out.columns)
    assert out["score"].between(0, 100).all() and out["reach"].between(0, 100).all()
    assert np.allclose(out["score"], 100 * out["p_win"], atol=0.01)
    assert (out["potential"] >= 0).all()
    # won accounts look like won accounts: their mean p_win is higher than the lost ones'
    assert (
        out.loc[sample["outcome"] == "won", "p_win"].mean()
        > out.loc[sample["outcome"] == "lost", "p_win"].mean()
    )


def test_no_leakage(scored, sample):
    feats = set(scored.model_card["features"])
    for col in (
        "outcome",
        "deal_size",
        "status",
        "mqls_90d",
        "opportunities_12m",
        "intent_score",
        "product_usage",
        "account_id",
        "lat",
        "lon",
        "zip",
    ):
        assert col not in feats
    assert "status" in scored.model_card["excluded_as_leakage"]
    shuffled = sample.copy()
    shuffled["outcome"] = np.random.default_rng(0).permutation(shuffled["outcome"].to_numpy())
    card = score_accounts(shuffled, ScoringConfig(seed=3, model="logistic")).model_card
    assert abs(card["cv_auc_mean"] - 0.5) < 0.06


def test_deterministic(sample):
    a = score_accounts(sample, ScoringConfig(seed=5, model="gbm"))
    b = score_accounts(sample, ScoringConfig(seed=5, model="gbm"))
    pd.testing.assert_frame_equal(a.accounts, b.accounts)
    assert a.model_card == b.model_card


def test_estimator_predicts_new_accounts(sample):
    scorer = LookalikeScorer(ScoringConfig(model="logistic"))
    fitted = scorer.fit(sample.iloc[:3000])
    new = sample.iloc[3000:]
    p = scorer.predict_proba(new)
    assert p.shape == (len(new),) and ((p > 0) & (p < 1)).all()
    assert np.allclose(
        scorer.predict_proba(sample.iloc[:10]), fitted.accounts["p_win"].iloc[:10], atol=1e-6
    )


def test_deal_size_none_keeps_deal_size_out_of_the_features(sample):
    # deal_size is filled in for exactly the won/lost rows; with deal_size=None it became a
    # feature (leakage), complete where the model was fitted and empty everywhere else, and
    # predicting p_win for the undecided accounts raised sklearn's ValueError
    result = LookalikeScorer(ScoringConfig(deal_size=None, model="logistic", seed=1)).fit(sample)
    card = result.model_card
    assert card["fallback_reason"] is None and "deal_size" not in card["features"]
    assert "deal_size" in card["excluded_as_leakage"]
    out = result.accounts
    assert len(out) == len(sample) and out["p_win"].between(0, 1).all()
    assert np.allclose(out["potential"], out["p_win"], atol=0.01)  # no deal size: expected wins
    assert "no deal size column configured" in " ".join(result.notes)


def test_feature_gaps_only_in_undecided_rows(sample):
    # a feature complete among the won/lost rows but blank for some undecided ones: the
    # logistic model imputes those gaps instead of refusing them
    gappy = sample.copy()
    undecided = np.flatnonzero(gappy["outcome"] == "")
    gappy.loc[undecided[::5], "employees"] = np.nan
    scorer = LookalikeScorer(ScoringConfig(model="logistic", seed=1))
    p = scorer.fit(gappy).accounts["p_win"]
    assert p.notna().all() and p.between(0, 1).all()
    assert np.isfinite(scorer.predict_deal_size(gappy.iloc[undecided[:50]])).all()
    assert np.isfinite(scorer.predict_proba(gappy.iloc[undecided[:50]])).all()


def test_few_labels_fall_back_to_rules(sample):
    few = sample.copy()
    labelled = np.flatnonzero(few["outcome"] != "")
    few.loc[labelled[30:], "outcome"] = ""
    result = score_accounts(few)
    assert result.model_card["model"] == "rules"
    assert "30 won/lost rows" in result.model_card["fallback_reason"]
    assert any("rules" in n for n in result.notes)
    assert result.accounts["score"].between(0, 100).all()
    one_class = sample.assign(outcome=np.where(sample["outcome"] == "", "", "won"))
    card = score_accounts(one_class).model_card
    assert card["model"] == "rules" and "one class" in card["fallback_reason"]
    no_history = sample.drop(columns=["outcome"])
    assert score_accounts(no_history).model_card["model"] == "rules"


def test_outcome_synonyms_and_bad_labels(sample):
    syn = sample.copy()
    syn["outcome"] = syn["outcome"].map({"won": "Closed Won", "lost": "closed lost", "": ""})
    fast = ScoringConfig(model="logistic")
    assert score_accounts(syn, fast).model_card["n_train"] == (sample["outcome"] != "").sum()
    bad = sample.copy()
    bad.loc[[4, 9], "outcome"] = "maybe"
    with pytest.raises(InputError, match=r"'outcome'.*rows 5, 10.*'maybe'"):
        score_accounts(bad, fast)


def test_bad_engagement_value_names_column_and_row(sample):
    bad = sample.copy()
    bad["mqls_90d"] = bad["mqls_90d"].astype(object)
    bad.loc[6, "mqls_90d"] = "lots"
    with pytest.raises(InputError, match=r"'mqls_90d'.*row 7"):
        score_accounts(bad)


def test_existing_score_and_reach_are_kept(sample):
    given = sample.assign(score=7.0, reach=3.0)
    result = score_accounts(given, ScoringConfig(model="logistic"))
    assert (result.accounts["score"] == 7.0).all() and (result.accounts["reach"] == 3.0).all()
    assert sum("kept as given" in n for n in result.notes) == 2


def test_reach_is_monotone_and_bounded():
    df = pd.DataFrame({"mqls": [0, 1, 5, 50], "intent": [0, 10, 50, 100]})
    r = reach(df, {"mqls": 0.5, "intent": 0.5})
    assert r[0] == 0 and np.all(np.diff(r) > 0) and r.max() <= 100


def test_rules_scorer_defaults():
    df = pd.DataFrame(
        {
            "industry": ["Software", "Education", None],
            "employees": [300, 3, np.nan],
            "annual_revenue": [5e7, 2e5, np.nan],
            "uses_crm": [1, 0, 0],
            "uses_cloud": [1, 0, 0],
        }
    )
    s = RulesScorer().score(df)
    assert s[0] > s[1] > s[2] == 0 and s[0] == 100


def test_write_scored_csv_and_parquet(scored, tmp_path):
    for name in ("scored.csv", "scored.parquet"):
        out = write_scored(scored, tmp_path / name)
        back = pd.read_csv(out) if name.endswith("csv") else pd.read_parquet(out)
        assert len(back) == len(scored.accounts) and set(ADDED) <= set(back.columns)
        card = json.loads(model_card_path(out).read_text())
        assert card["cv_auc_mean"] == scored.model_card["cv_auc_mean"]
        assert model_card_path(out).name == "scored.model.json"


def test_scoring_config_from_a_plan_table():
    cfg = scoring_config(
        {"model": "rules", "deal_size": "amount", "rules": {"other_industry_points": 3}}
    )
    assert (
        cfg.model == "rules" and cfg.deal_size == "amount" and cfg.rules.other_industry_points == 3
    )
    assert scoring_config(cfg) is cfg
    assert scoring_config(None) == ScoringConfig() == scoring_config({})
    with pytest.raises(InputError, match=r"^\[scoring\]: .*'colour'"):
        scoring_config({"colour": "red"})


def test_the_model_option_scores_with_rules_without_history_through_the_cli(tmp_path):
    """``--model rules`` (score, layers): the rules, not a model, on a file with history;
    the same scores as the rules scorer; a model name it does not know is exit 2."""
    accounts = sample_accounts(["RI"], n=150, seed=2)
    accounts.to_csv(tmp_path / "a.csv", index=False)
    r = run_cli("score", tmp_path / "a.csv", "--model", "rules", "--out", tmp_path / "s.csv")
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "s.model.json").read_text())
    assert (
        card["model"] == "rules" and card["fallback_reason"] == "rules chosen in the configuration"
    )
    assert card["class_balance"]["won"] > 0 and card["class_balance"]["lost"] > 0  # had history
    out = pd.read_csv(tmp_path / "s.csv", dtype={"zip": str})
    rules = score_accounts(accounts, ScoringConfig(model="rules")).accounts
    assert np.allclose(out["score"], rules["score"]) and np.allclose(
        out["potential"], rules["potential"]
    )
    r = run_cli("layers", tmp_path / "a.csv", "--model", "rules", "--units", "county", "--region",
                "RI", "--out", tmp_path / "u.parquet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    units = pd.read_parquet(tmp_path / "u.parquet")
    assert np.isclose(units["score"].sum(), rules["score"].sum())
    r = run_cli("score", tmp_path / "a.csv", "--model", "forest", "--out", tmp_path / "f.csv")
    assert r.returncode == 2 and "--model" in r.stderr.strip().splitlines()[-1], r.stderr
    assert not (tmp_path / "f.csv").exists()
