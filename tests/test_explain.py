"""Explanations: SHAP additivity for every model kind the registry holds, top-k, constants, global
importance on a planted signal, LIME determinism and agreement, and the figures."""

import json

import numpy as np
import pandas as pd
import pytest
from builders import feature_frame, local_store, simulated_prices
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier, XGBRegressor

from cryptosentinel.bundle import (
    MissingFeatureError,
    ModelBundle,
    ModelInputError,
    load_bundle,
    save_bundle,
)
from cryptosentinel.explain import (
    CONSTANT_NOTE,
    ExplainError,
    agreement,
    agreement_text,
    lime_explain,
    make_explainer,
)
from cryptosentinel.explain_outputs import (
    BACKGROUND_DAYS,
    Explanations,
    explain_models,
    lime_check,
    save_summary_plot,
    save_waterfall,
)

pytestmark = pytest.mark.model

FEATURES = ["strong", "weak", *[f"noise_{i}" for i in range(6)]]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    """Features with a planted signal: y = 0.03 * strong + 0.005 * weak + noise (return-sized numbers)."""
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(3000, len(FEATURES))), columns=FEATURES)
    y = 0.03 * X["strong"].to_numpy() + 0.005 * X["weak"].to_numpy() + 0.004 * rng.normal(size=len(X))
    return X, y


def _calibrated(make, X, up):
    """As training does: fit on the older rows, calibrate a frozen copy on the newer ones."""
    est = make().fit(X.iloc[:2000], up[:2000])
    return CalibratedClassifierCV(FrozenEstimator(est), method="isotonic").fit(X.iloc[2000:], up[2000:])


def _fit(kind: str, X: pd.DataFrame, y: np.ndarray):
    up = (y > 0).astype(np.int64)
    makers = {
        "xgb_reg": lambda: XGBRegressor(n_estimators=150, max_depth=4, learning_rate=0.1, n_jobs=1,
                                        random_state=0).fit(X, y),
        "rf_reg": lambda: RandomForestRegressor(n_estimators=40, max_depth=8, min_samples_leaf=20, max_features="sqrt",
                                                n_jobs=1, random_state=0).fit(X, y),
        "hgb_reg": lambda: HistGradientBoostingRegressor(max_iter=80, max_leaf_nodes=15, random_state=0).fit(X, y),
        "ridge_reg": lambda: make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X, y),
        "hgb_clf": lambda: _calibrated(lambda: HistGradientBoostingClassifier(max_iter=60, random_state=0), X, up),
        "xgb_clf": lambda: _calibrated(lambda: XGBClassifier(n_estimators=100, max_depth=4, n_jobs=1,
                                                             random_state=0), X, up),
    }
    return makers[kind]()


KINDS = ["xgb_reg", "rf_reg", "hgb_reg", "ridge_reg", "hgb_clf", "xgb_clf"]


@pytest.fixture(scope="module")
def bundles(data) -> dict[str, ModelBundle]:
    X, y = data
    out = {}
    for kind in KINDS:
        task = "classification" if kind.endswith("_clf") else "regression"
        out[kind] = ModelBundle(kind, 24, task, _fit(kind, X, y), FEATURES, "test")
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


# --- SHAP: contributions + base value = the model's output


@pytest.mark.parametrize("kind", KINDS)
def test_contributions_add_up_to_the_output(bundles, data, kind):
    X, _ = data
    bundle = bundles[kind]
    ex = make_explainer(bundle, X)
    rows = X.iloc[[0, 5, 17, 123, 999, 2500]]
    phi = ex.shap_values(rows)
    assert phi.shape == (len(rows), len(FEATURES))
    np.testing.assert_allclose(ex.base_value + phi.sum(axis=1), ex.output(rows), rtol=1e-5, atol=1e-6)
    if bundle.task == "regression":  # the output is the forecast itself
        assert ex.output_space == "prediction"
        np.testing.assert_allclose(ex.base_value + phi.sum(axis=1), bundle.predict(rows), rtol=1e-4, atol=1e-6)
    else:  # log-odds of up of the classifier inside the calibration
        assert ex.output_space == "log_odds"
        inner = bundle.estimator.calibrated_classifiers_[0].estimator
        np.testing.assert_allclose(ex.output(rows), _logit(inner.predict_proba(rows)[:, 1]), rtol=1e-4, atol=1e-5)
    records = ex.explain_records(rows, k=3)
    json.dumps(records)
    assert ex.explain_records(X.iloc[5]) == ex.explain_records(X.iloc[[5]])  # a Series is one row
    given = ex.explain_records(rows, predictions=bundle.predict(rows))
    assert [r["prediction"] for r in given] == pytest.approx([r["prediction"] for r in records])
    with pytest.raises(ModelInputError, match="2 predictions for 6 rows"):
        ex.explain_records(rows, predictions=[0.1, 0.2])
    for rec, p in zip(records, bundle.predict(rows), strict=True):
        shown = sum(c["contribution"] for c in rec["contributions"])
        assert rec["base_value"] + shown + rec["other"] == pytest.approx(rec["output"], abs=1e-6)
        assert rec["prediction"] == pytest.approx(p)


@pytest.mark.parametrize("kind", ["xgb_reg", "hgb_reg", "xgb_clf"])
def test_tree_models_explain_missing_values(bundles, data, kind):
    X, _ = data
    rows = X.iloc[:4].copy()
    rows.iloc[0, 0] = np.nan
    rows.iloc[2, 3] = np.nan
    ex = make_explainer(bundles[kind])
    np.testing.assert_allclose(ex.base_value + ex.shap_values(rows).sum(axis=1), ex.output(rows), rtol=1e-5, atol=1e-6)


def test_xgboost_contributions_match_shap_tree_explainer(bundles, data):
    import shap

    X, _ = data
    est = bundles["xgb_reg"].estimator
    rows = X.iloc[:50]
    te = shap.TreeExplainer(est)
    np.testing.assert_allclose(make_explainer(bundles["xgb_reg"]).shap_values(rows), te.shap_values(rows),
                               rtol=1e-4, atol=1e-6)


def test_linear_contributions_are_coef_times_standardised_offset_and_match_shap(bundles, data):
    import shap

    X, _ = data
    pipe = bundles["ridge_reg"].estimator
    scaler, ridge = pipe[0], pipe[-1]
    rows = X.iloc[10:20]
    ex = make_explainer(bundles["ridge_reg"])  # no background: the scaler's training mean is the reference
    expected = ridge.coef_ * (rows.to_numpy() - scaler.mean_) / scaler.scale_
    np.testing.assert_allclose(ex.shap_values(rows), expected, rtol=1e-10, atol=1e-12)
    assert ex.base_value == pytest.approx(ridge.intercept_)
    lin = shap.LinearExplainer(ridge, shap.maskers.Independent(scaler.transform(X), max_samples=len(X)))
    np.testing.assert_allclose(ex.shap_values(rows), lin.shap_values(scaler.transform(rows)), rtol=1e-6, atol=1e-9)
    # with a background, its mean becomes the reference
    bg = X.iloc[:100]
    ex_bg = make_explainer(bundles["ridge_reg"], bg)
    assert ex_bg.base_value == pytest.approx(float(pipe.predict(bg.mean().to_frame().T)[0]))
    np.testing.assert_allclose(ex_bg.base_value + ex_bg.shap_values(rows).sum(axis=1), pipe.predict(rows), atol=1e-9)


def test_linear_classifier_explains_log_odds(data):
    X, y = data
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y > 0)
    b = ModelBundle("logit_clf", 24, "classification", pipe, FEATURES, "test")
    ex = make_explainer(b)
    rows = X.iloc[:8]
    np.testing.assert_allclose(ex.base_value + ex.shap_values(rows).sum(axis=1), pipe.decision_function(rows), atol=1e-9)


def test_calibrated_ensemble_averages_its_classifiers(data):
    X, y = data
    cal = CalibratedClassifierCV(HistGradientBoostingClassifier(max_iter=30, random_state=0), cv=3).fit(X, y > 0)
    ex = make_explainer(ModelBundle("hgb_clf", 24, "classification", cal, FEATURES, "test"))
    assert len(ex.parts) == 3
    rows = X.iloc[:6]
    inner = np.mean([c.estimator.decision_function(rows) for c in cal.calibrated_classifiers_], axis=0)
    np.testing.assert_allclose(ex.base_value + ex.shap_values(rows).sum(axis=1), inner, rtol=1e-5, atol=1e-6)


def test_random_forest_classifier_explains_probability(data):
    X, y = data
    rf = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0).fit(X, y > 0)
    ex = make_explainer(ModelBundle("rf_clf", 24, "classification", rf, FEATURES, "test"))
    assert ex.output_space == "probability"
    rows = X.iloc[:6]
    np.testing.assert_allclose(ex.base_value + ex.shap_values(rows).sum(axis=1), rf.predict_proba(rows)[:, 1],
                               atol=1e-6)


def test_unknown_model_needs_a_background_then_uses_permutation_shap(data, caplog):
    X, y = data
    knn = KNeighborsRegressor(n_neighbors=15).fit(X, y)
    b = ModelBundle("knn_reg", 24, "regression", knn, FEATURES, "test")
    with pytest.raises(ExplainError, match="background"):
        make_explainer(b)
    with caplog.at_level("WARNING", logger="cryptosentinel.explain"):
        ex = make_explainer(b, X, max_background=50)
    assert ex.method == "permutation" and len(ex.background) == 50
    assert any(r.levelname == "WARNING" and "falling back to the slow permutation SHAP" in r.getMessage()
               for r in caplog.records)
    rows = X.iloc[:3]
    np.testing.assert_allclose(ex.base_value + ex.shap_values(rows).sum(axis=1), knn.predict(rows), atol=1e-9)


def test_a_model_tree_shap_cannot_read_falls_back_with_a_warning(data, caplog):
    from sklearn.ensemble import BaggingRegressor

    X, y = data
    bag = BaggingRegressor(KNeighborsRegressor(n_neighbors=5), n_estimators=3, random_state=0).fit(X, y)
    b = ModelBundle("bag_reg", 24, "regression", bag, FEATURES, "test")
    with caplog.at_level("WARNING", logger="cryptosentinel.explain"):
        ex = make_explainer(b, X, max_background=30)
    assert ex.method == "permutation"
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("shap.TreeExplainer cannot read BaggingRegressor" in m and "falling back" in m for m in warned), warned


def test_bundle_loaded_from_the_registry_explains_the_same(bundles, data, tmp_path):
    X, _ = data
    b = bundles["xgb_reg"]
    loaded = load_bundle(tmp_path, save_bundle(b, tmp_path))
    rows = X.iloc[:5]
    np.testing.assert_allclose(make_explainer(loaded).shap_values(rows), make_explainer(b).shap_values(rows),
                               rtol=1e-6, atol=1e-9)


# --- top-k, bad input, constants


@pytest.mark.parametrize("k", [1, 3, 5, len(FEATURES) + 2])
def test_top_k_sorted_by_absolute_contribution_and_capped(bundles, data, k):
    X, _ = data
    ex = make_explainer(bundles["xgb_reg"])
    rows = ex.explain(X.iloc[:25], k=k)
    assert len(rows) == 25
    phi = ex.shap_values(X.iloc[:25])
    for row, full in zip(rows, phi, strict=True):
        assert 1 <= len(row) <= min(k, len(FEATURES))
        mags = [abs(c["contribution"]) for c in row]
        assert mags == sorted(mags, reverse=True)
        assert mags[0] == pytest.approx(np.abs(full).max())
        assert set(row[0]) == {"feature", "value", "contribution"}
    assert ex.explain(X.iloc[:1])[0][0]["feature"] in FEATURES
    with pytest.raises(ModelInputError, match="k must be"):
        ex.explain(X.iloc[:1], k=0)


def test_bad_input_is_refused_with_the_reason(bundles, data):
    X, _ = data
    with pytest.raises(MissingFeatureError, match="strong"):
        make_explainer(bundles["xgb_reg"]).explain(X.drop(columns=["strong"]))
    with pytest.raises(MissingFeatureError, match="weak"):
        make_explainer(bundles["ridge_reg"], X.drop(columns=["weak"]))
    bad = X.iloc[:3].copy()
    bad.iloc[1, 2] = np.nan
    with pytest.raises(ModelInputError, match="noise_0"):
        make_explainer(bundles["ridge_reg"]).explain(bad)


def test_constant_baseline_has_no_contributions(data, tmp_path):
    X, _ = data
    rw = ModelBundle("random_walk", 24, "regression", None, FEATURES, "test", constant=0.0)
    ex = make_explainer(rw, X)
    assert ex.is_constant and ex.note == CONSTANT_NOTE and ex.base_value == 0.0
    assert ex.explain(X.iloc[:3]) == [[], [], []]
    rec = ex.explain_records(X.iloc[:1])[0]
    assert rec["contributions"] == [] and rec["note"] == CONSTANT_NOTE and rec["prediction"] == 0.0
    imp = ex.global_importance(X)
    assert list(imp.columns) == ["feature", "mean_abs_shap"] and imp.empty
    assert ex.importance_dict(X)["features"] == []
    assert lime_explain(rw, X, X.iloc[0]) == []
    for path in (save_summary_plot(ex, X, tmp_path / "s.png"), save_waterfall(ex, X.iloc[:1], tmp_path / "w.png")):
        assert path.read_bytes().startswith(PNG)


# --- global importance


@pytest.mark.parametrize("kind", KINDS)
def test_global_importance_ranks_the_planted_feature_first(bundles, data, kind):
    X, _ = data
    ex = make_explainer(bundles[kind], X)
    imp = ex.global_importance(X, max_rows=1000)
    assert list(imp.columns) == ["feature", "mean_abs_shap"]
    assert sorted(imp["feature"]) == sorted(FEATURES)
    assert (imp["mean_abs_shap"] >= 0).all() and imp["mean_abs_shap"].is_monotonic_decreasing
    assert imp["feature"].iloc[0] == "strong"
    if kind.endswith("_reg"):
        assert imp["feature"].iloc[1] == "weak"
    d = ex.importance_dict(X, max_rows=1000)
    assert json.loads(json.dumps(d)) == d
    assert d["rows"] == 1000 and d["features"][0] == {"feature": "strong", "mean_abs_shap": imp["mean_abs_shap"].iloc[0]}


# --- LIME and agreement


@pytest.mark.parametrize("kind", ["xgb_reg", "ridge_reg", "hgb_clf"])
def test_lime_is_seeded_and_finds_the_planted_feature(bundles, data, kind):
    X, _ = data
    row = X.iloc[42].copy()
    row["strong"] = 1.5  # far enough from the mean that its contribution dominates
    bg = X.iloc[:500]
    first = lime_explain(bundles[kind], bg, row, num_features=5, seed=3, num_samples=2000)
    assert first == lime_explain(bundles[kind], bg, row, num_features=5, seed=3, num_samples=2000)
    assert first != lime_explain(bundles[kind], bg, row, num_features=5, seed=4, num_samples=2000)
    assert len(first) == 5 and set(first[0]) == {"feature", "weight", "value", "contribution", "local_r2"}
    assert 0 < first[0]["local_r2"] <= 1
    assert first[0]["feature"] == "strong" and first[0]["weight"] > 0
    assert max(first, key=lambda e: abs(e["contribution"]))["feature"] == "strong"


def test_lime_and_shap_agree_on_a_linear_model(bundles, data):
    X, _ = data
    ex = make_explainer(bundles["ridge_reg"], X)
    row = X.iloc[[7]]
    shap_row = ex.explain(row, k=len(FEATURES))[0]
    lime_row = lime_explain(bundles["ridge_reg"], X, row, num_features=len(FEATURES), seed=0, explainer=ex)
    a = agreement(shap_row, lime_row, k=2)  # the two planted features; the rest are ~0 and swap places
    assert a["top_k_overlap"] == 1.0 and a["sign_agreement"] == 1.0 and a["spearman"] == 1.0
    assert "agree on 2 of the top 2" in agreement_text(a)
    assert a["lime_r2"] > 0.99 and "R² 1.00" in agreement_text(a)  # a line fits a linear model
    # LIME's local model of a linear model is that model: its implied contributions are SHAP's
    lime_c = {e["feature"]: e["contribution"] for e in lime_row}
    for c in shap_row[:2]:
        assert lime_c[c["feature"]] == pytest.approx(c["contribution"], rel=0.05)


def test_agreement_identical_reversed_and_disjoint():
    ranked = [{"feature": f, "contribution": c} for f, c in zip("abcdef", (6.0, -5.0, 4.0, 3.0, -2.0, 1.0), strict=True)]
    same = agreement(ranked, ranked, k=4)
    assert (same["spearman"], same["top_k_overlap"], same["sign_agreement"]) == (1.0, 1.0, 1.0)
    assert "same story" in agreement_text(same)
    rev = [{"feature": f, "weight": c} for f, c in zip("abcdef", (1.0, -2.0, 3.0, 4.0, -5.0, 6.0), strict=True)]
    full = agreement(ranked, rev, k=6)
    assert full["spearman"] == pytest.approx(-1.0) and full["top_k_overlap"] == 1.0
    top2 = agreement(ranked, rev, k=2)  # {a, b} against {f, e}: nothing shared, ranks reversed over the union
    assert top2["top_k_overlap"] == 0.0 and top2["sign_agreement"] is None and top2["spearman"] == pytest.approx(-1.0)
    assert "disagree" in agreement_text(top2)
    flipped = agreement(ranked, [{**r, "contribution": -r["contribution"]} for r in ranked], k=4)
    assert flipped["sign_agreement"] == 0.0 and flipped["spearman"] == 1.0


def test_agreement_accepts_mappings_and_caps_k():
    shap_row = pd.Series({"a": 0.3, "b": -0.2, "c": 0.1})
    a = agreement(shap_row, {"a": 2.0, "b": -1.0}, k=10)
    assert a["k"] == 2 and a["top_k_overlap"] == 1.0 and a["sign_agreement"] == 1.0
    assert agreement([], {"a": 1.0})["top_k_overlap"] is None
    assert "Nothing to compare" in agreement_text(agreement([], []))


# --- figures


@pytest.mark.parametrize("kind", ["xgb_reg", "xgb_clf"])
def test_figures_are_written_as_png(bundles, data, tmp_path, kind):
    X, _ = data
    ex = make_explainer(bundles[kind])
    summary = save_summary_plot(ex, X.iloc[:300], tmp_path / "fig" / "summary.png")
    waterfall = save_waterfall(ex, X.iloc[5], tmp_path / "fig" / "waterfall.png")
    for path in (summary, waterfall):
        raw = path.read_bytes()
        assert raw.startswith(PNG) and len(raw) > 5000
    with pytest.raises(ModelInputError, match="one row"):
        save_waterfall(ex, X.iloc[:2], tmp_path / "two.png")


# --- the models training fits, as it fits them


def test_every_training_model_is_explained_additively(data):
    fitting = pytest.importorskip("cryptosentinel.fitting")  # MODELS and fit_model, as training fits them
    X, y = data
    ts = (pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(len(X)), unit="h")).asi8
    rows = X.iloc[[3, 333, 2999]]
    for name, (task, _) in fitting.MODELS.items():
        model = fitting.fit_model(name, X, y, ts, 24 * 3_600 * 10**9, band=0.001, seed=0, n_jobs=1)
        bundle = ModelBundle(name, 24, task, model, FEATURES, "test")
        ex = make_explainer(bundle, X)
        np.testing.assert_allclose(ex.base_value + ex.shap_values(rows).sum(axis=1), ex.output(rows),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
        assert ex.global_importance(X, max_rows=300)["feature"].iloc[0] == "strong", name
        assert ex.method in ("xgboost_tree", "tree", "linear"), name  # never the slow fallback


def test_one_explainer_serves_concurrent_requests(bundles, data):
    from concurrent.futures import ThreadPoolExecutor

    X, _ = data
    ex = make_explainer(bundles["xgb_reg"])
    rows = [X.iloc[[i]] for i in range(0, 400, 5)]
    expected = [ex.explain(r) for r in rows]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ex.explain, rows)) == expected


# --- explanations at work: served forecasts, the LIME check, a training run's models


@pytest.fixture()
def feature_store(tmp_path):
    start = pd.Timestamp("2024-01-01", tz="UTC")
    feats = feature_frame(simulated_prices(["bitcoin", "ethereum"], start, start + pd.Timedelta(days=60), seed=1))
    with local_store(tmp_path / "store.sqlite", features=feats) as store:
        yield store, feats.dropna().reset_index(drop=True)


def _feature_bundle(feats, data_end=None):
    from cryptosentinel.features import FEATURE_NAMES

    noise = np.random.default_rng(0).normal(scale=1e-4, size=len(feats))
    y = (0.5 * feats["ret_24"] - 0.2 * feats["vol_24"]).to_numpy() + noise  # a planted linear signal
    ridge = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(feats[FEATURE_NAMES], y)
    b = ModelBundle("ridge_reg", 24, "regression", ridge, FEATURE_NAMES, "test", version=3)
    if data_end is not None:
        b.lineage["data_end"] = data_end.isoformat()
    return b


def test_explanations_read_the_background_before_data_end_once_per_version(feature_store, caplog):
    store, feats = feature_store
    end = feats["ts"].quantile(0.7)
    b = _feature_bundle(feats, end)
    explanations = Explanations(store, seed=0, top_k=3)
    rows = feats.tail(4)
    top = explanations(b, rows)
    assert len(top) == 4 and all(len(r) == 3 for r in top)
    assert explanations.explainer(b) is explanations.explainer(b)
    bg = explanations.background(b)
    assert bg["ts"].max() <= end and bg["ts"].min() >= end - BACKGROUND_DAYS
    rw = ModelBundle("random_walk", 24, "regression", None, b.feature_names, "test", constant=0.0)
    assert explanations(rw, rows) == [[]] * 4
    with caplog.at_level("WARNING", logger="cryptosentinel.explain_outputs"):
        everything = explanations.background(_feature_bundle(feats))
    assert len(everything) > len(bg) and "falls back to every stored feature row" in caplog.text


def test_explanations_take_seed_and_top_k_from_settings(feature_store):
    from cryptosentinel.config import Settings

    store, _ = feature_store
    explanations = Explanations(store, Settings(seed=7, top_features=2))
    assert (explanations.seed, explanations.top_k) == (7, 2)
    assert (Explanations(store, Settings(seed=7), top_k=4).top_k) == 4


def test_lime_check_agrees_with_shap_on_a_linear_model(feature_store):
    store, feats = feature_store
    b = _feature_bundle(feats, feats["ts"].max())
    latest = feats.groupby("coin").tail(1)
    checked = lime_check(Explanations(store, seed=0), b, latest)
    assert sorted(checked) == ["bitcoin", "ethereum"]
    assert all(a["top_k_overlap"] >= 0.6 for a in checked.values()), checked
    assert lime_check(Explanations(store), None, latest) == {}


def test_explain_models_stores_importance_and_writes_figures(feature_store, tmp_path):
    _, feats = feature_store
    b = _feature_bundle(feats)
    b.lineage["trained_at"] = "2024-03-01T10:20:30+00:00"
    rw = ModelBundle("random_walk", 24, "regression", None, b.feature_names, "test", constant=0.0)
    figures = explain_models({"ridge_reg": b, "random_walk": rw}, feats, tmp_path / "explain", seed=0)
    assert list(figures) == ["ridge_reg"]
    summary = tmp_path / "explain" / f"{b.registered_name}_2024-03-01T102030_summary.png"
    assert figures["ridge_reg"] == str(summary) and summary.read_bytes().startswith(PNG)
    assert summary.with_name(summary.name.replace("_summary", "_waterfall")).read_bytes().startswith(PNG)
    imp = b.lineage["shap_importance"]
    assert imp["rows"] == min(len(feats), 2000) and imp["features"][0]["mean_abs_shap"] > 0
    assert "shap_importance" not in rw.lineage
