"""The champion gate of a training run (`registry.gate_tests`, `registry.gate_run`): per-row out-of-sample
losses, a one-sided Diebold-Mariano test with a Holm correction, a 1% improvement and 3 of 4 folds won; the
same-family refresh; the volatility task against its best baseline; and the false-promotion rate on
block-permuted labels (slow).

The runs are hand-built in the shape `gate_run` reads (`horizon`, `bundles`, `predictions` with `coin`, `ts`,
`fold`, the target and one column per bundle, `lineage` with `folds` and `dead_band`); the bundles hold small
fitted estimators so the registry can store and load them.
"""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from cryptosentinel.bundle import ModelBundle
from cryptosentinel.config import Settings
from cryptosentinel.inference import Predictor
from cryptosentinel.registry import (
    GATE_ALPHA,
    GATE_FOLD_SHARE,
    GATE_MIN_IMPROVEMENT,
    TASK_GATES,
    GateError,
    champion_alias,
    gate_run,
    gate_tests,
)
from cryptosentinel.registry_mlflow import LocalRegistry
from cryptosentinel.training import block_permuted

pytestmark = pytest.mark.model

HOURS, N_FOLDS, COINS = 200, 4, ("bitcoin", "ethereum")
FEATURES = ["f1", "f2", "vol_24"]
_X = pd.DataFrame(np.random.default_rng(0).normal(size=(50, 3)), columns=FEATURES)
_EST = make_pipeline(Ridge()).fit(_X, _X["f1"])


def bundle(name, horizon, task="regression"):
    """A registrable bundle: constant baselines hold their constant, models a small fitted estimator."""
    if name in ("random_walk", "majority"):
        return ModelBundle(name, horizon, task, None, [], "v1", constant=0.0 if name == "random_walk" else 0.5)
    if task == "volatility":
        if name == "unconditional":
            return ModelBundle(name, horizon, task, None, [], "v1", constant=1e-3)
        if name in ("ewma", "vol_168"):
            return ModelBundle(name, horizon, task, None, [name], "v1", variance={"column": name, "multiplier": 1.0})
        return ModelBundle(name, horizon, task, _EST, FEATURES, "v1", variance={"bias": 1.0})
    return ModelBundle(name, horizon, task, _EST, FEATURES, "v1")


def price_run(horizon, forecasts, seed=0, start="2024-03-01", task="regression", band=0.001):
    """A run of `task` whose out-of-sample forecasts are `forecasts[name](y, fold, rng)`, beside its baseline."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=N_FOLDS * HOURS, freq="h", tz="UTC")
    fold = np.repeat(np.arange(1, N_FOLDS + 1), HOURS)
    rows = []
    for coin in COINS:
        y = 0.02 * rng.standard_t(5, len(ts))
        cols = {name: f(y, fold, rng) for name, f in forecasts.items()}
        rows.append(pd.DataFrame({"coin": coin, "ts": ts, "fold": fold, "y_ret": y, **cols}))
    base = "random_walk" if task == "regression" else "majority"
    predictions = pd.concat(rows, ignore_index=True)
    predictions[base] = 0.0 if task == "regression" else 0.5
    names = [base, *forecasts]
    return SimpleNamespace(horizon=horizon, predictions=predictions,
                           bundles={n: bundle(n, horizon, task) for n in names},
                           lineage={"folds": [{"fold": k} for k in range(1, N_FOLDS + 1)], "dead_band": band})


def share(k):
    """A forecast that knows a share k of the realised return (k=0: the random walk)."""
    return lambda y, fold, rng: k * y


def noise(scale=1e-4):
    return lambda y, fold, rng: scale * rng.standard_normal(len(y))


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    return LocalRegistry(tmp_path_factory.mktemp("gate-registry") / "data", horizons=[24])


# --- the tests of one candidate -------------------------------------------------------------------

def test_the_thresholds_are_the_documented_ones():
    assert (GATE_ALPHA, GATE_MIN_IMPROVEMENT, GATE_FOLD_SHARE) == (0.05, 0.01, 0.75)
    assert math.ceil(GATE_FOLD_SHARE * 4) == 3
    assert set(TASK_GATES) == {"regression", "classification", "volatility"}
    assert TASK_GATES["volatility"].baselines == ("unconditional", "ewma", "vol_168")


def test_noise_and_a_tiny_improvement_do_not_pass_but_a_clear_winner_does():
    run = price_run(40, {"noise_reg": noise(), "tiny_reg": share(0.005), "ridge_reg": share(0.5)})
    t = gate_tests(run, "regression")
    assert not t["noise_reg"].passed and "not significantly lower" in t["noise_reg"].reason
    # shrinking towards the truth by 0.5% is always (significantly) better, but by less than the 1% required
    tiny = t["tiny_reg"]
    assert tiny.p_holm < GATE_ALPHA and tiny.folds_won == 4 and tiny.improvement == pytest.approx(0.005, rel=1e-6)
    assert not tiny.passed and "by 0.50%, less than the 1% required" in tiny.reason
    win = t["ridge_reg"]
    assert win.passed and win.improvement == pytest.approx(0.5) and win.folds_won == 4
    assert (win.n, win.n_rows, win.n_folds, win.folds_needed, win.baseline) == (800, 1600, 4, 3, "random_walk")
    assert win.p_value <= win.p_holm < GATE_ALPHA


def test_two_of_four_folds_is_not_enough():
    def half(y, fold, rng):  # very good in folds 1-2, a little worse than the random walk in 3-4
        return np.where(fold <= 2, 0.9 * y, -0.05 * y)
    t = gate_tests(price_run(41, {"hgb_reg": half}), "regression")["hgb_reg"]
    assert t.improvement > 0.3 and t.folds_won == 2 and not t.passed
    assert "lower than the random_walk's in only 2 of 4 folds (3 needed)" in t.reason


def borderline(horizon, others):
    """A candidate whose raw one-sided DM p is about 0.02 (loss 2% below the random walk's in every fold), beside
    `others` noise candidates. Its losses are built row by row: |y| = 0.03 and loss = 0.03 + d, where d has mean
    -0.0006 in every fold and a noise scale solved from a first pass (the DM statistic scales as 1/scale)."""
    rng = np.random.default_rng(5)
    e = rng.uniform(-1, 1, (N_FOLDS, HOURS))  # bounded, so every loss stays positive
    e = ((e - e.mean(axis=1, keepdims=True)) / e.std(axis=1, keepdims=True)).ravel()

    def make(scale):
        def f(y, fold, _rng):
            y[:] = 0.03 * np.sign(y)  # the realised returns of this run: |y| = 0.03
            loss = 0.03 - 0.0006 + scale * e
            return y - np.sign(y) * loss
        return f
    forecasts = {"ridge_reg": make(1e-3)} | {f"noise{i}_reg": noise() for i in range(others)}
    stat = gate_tests(price_run(horizon, {"ridge_reg": make(1e-3)}, start="2024-05-01"), "regression")["ridge_reg"].dm_stat
    scale = 1e-3 * stat / stats.t.ppf(0.02, N_FOLDS * HOURS - 1)  # the scale at which the one-sided p is 0.02
    forecasts["ridge_reg"] = make(scale)
    return price_run(horizon, forecasts, start="2024-05-01")


def test_holm_makes_a_borderline_p_fail(reg):
    alone = gate_tests(borderline(42, 0), "regression")["ridge_reg"]
    assert alone.p_value == pytest.approx(0.02, abs=1e-3) and alone.passed  # alone it passes ...
    run = borderline(42, 3)
    t = gate_tests(run, "regression")
    b = t["ridge_reg"]
    assert b.p_value == pytest.approx(0.02, abs=1e-3) and b.improvement == pytest.approx(0.02, abs=1e-3)
    assert b.folds_won == 4 and b.p_holm == pytest.approx(4 * b.p_value)  # ... among four it does not
    assert not b.passed and "after the Holm correction across 4 candidates" in b.reason
    assert not any(x.passed for x in t.values())
    decision = gate_run(reg, run, "regression")
    assert not decision["promoted"] and decision["name"] == "ridge_reg_42h"
    assert decision["p_holm"] == pytest.approx(b.p_holm) and decision["champion_after"]["name"] == "random_walk_42h"
    assert set(decision["candidates"]) == {"ridge_reg", "noise0_reg", "noise1_reg", "noise2_reg"}


def test_classifiers_are_gated_on_the_brier_score_of_rows_beyond_the_dead_band(reg):
    def informed(y, fold, rng):
        return np.clip(0.5 + 0.3 * np.sign(y) + 0.05 * rng.standard_normal(len(y)), 0.01, 0.99)
    run = price_run(43, {"hgb_clf": informed, "xgb_clf": lambda y, f, r: np.full(len(y), 0.5005)},
                    task="classification", band=0.01)
    t = gate_tests(run, "classification")
    moved = (np.abs(run.predictions["y_ret"]) >= 0.01).sum()
    assert t["hgb_clf"].passed and t["hgb_clf"].n_rows == moved and t["hgb_clf"].baseline == "majority"
    assert not t["xgb_clf"].passed
    d = gate_run(reg, run, "classification")
    assert d["promoted"] and d["metric"] == "brier" and reg.champion(43, "classification")["name"] == "hgb_clf_43h"


# --- the champion: first, refreshed, replaced, handed back -------------------------------------------

def test_a_champion_is_refreshed_by_its_own_family_and_does_not_age(reg, monkeypatch):
    h = 44
    import mlflow.store.model_registry.sqlalchemy_store as sql_store
    real_clock = sql_store.get_current_time_millis
    forty_days_ago = real_clock() - 40 * 86_400_000
    monkeypatch.setattr(sql_store, "get_current_time_millis", lambda: forty_days_ago)  # the first training's day
    first = gate_run(reg, price_run(h, {"ridge_reg": share(0.5), "xgb_reg": share(0.3)}, seed=1), "regression")
    monkeypatch.setattr(sql_store, "get_current_time_millis", real_clock)
    assert first["promoted"] and first["champion_before"]["name"] == f"random_walk_{h}h"  # the first champion
    assert first["champion_after"] == {"name": f"ridge_reg_{h}h", "version": first["version"]}

    settings = Settings(_env_file=None, horizons=[h])
    now = pd.Timestamp.now(tz="UTC")
    assert Predictor(reg, settings).model_age_days(h, now) > settings.max_model_age_days  # forecasts would be refused

    # retrained on newer data: the champion's family still passes and is the best, so its new version takes over
    second = gate_run(reg, price_run(h, {"ridge_reg": share(0.5), "xgb_reg": share(0.3)}, seed=2,
                                     start="2024-04-10"), "regression")
    assert second["promoted"] and second["name"] == f"ridge_reg_{h}h" and second["version"] == first["version"] + 1
    assert f"ridge_reg retrained on newer data replaces ridge_reg_{h}h v{first['version']}" in second["reason"]
    assert reg.champion(h)["version"] == second["version"]
    assert Predictor(reg, settings).model_age_days(h, now) < 1
    assert [e["name"] for e in reg.history(h)] == [f"random_walk_{h}h", f"ridge_reg_{h}h", f"ridge_reg_{h}h"]


def test_another_family_needs_a_lower_loss_than_the_champions_family_on_the_same_rows(reg):
    h = 45
    gate_run(reg, price_run(h, {"ridge_reg": share(0.5), "xgb_reg": share(0.3)}, seed=1), "regression")
    # xgb passes, ridge passes: the same loss is no win, so ridge's retrained version stays champion
    tie = gate_run(reg, price_run(h, {"ridge_reg": share(0.5), "xgb_reg": share(0.5)}, seed=2), "regression")
    assert tie["promoted"] and tie["name"] == f"ridge_reg_{h}h" and "retrained on newer data" in tie["reason"]
    assert "ridge_reg is the champion" in reg.load(f"xgb_reg_{h}h").reason
    # xgb now has a lower loss than ridge on the same rows: it replaces the champion
    better = gate_run(reg, price_run(h, {"ridge_reg": share(0.4), "xgb_reg": share(0.6)}, seed=3), "regression")
    assert better["promoted"] and better["name"] == f"xgb_reg_{h}h"
    assert better["champion_score"] == pytest.approx(0.6 * better["baseline_score"], rel=1e-9)
    assert f"below champion ridge_reg_{h}h v{tie['version']}'s family's" in better["reason"]


def test_the_baseline_takes_over_when_the_champions_family_no_longer_passes(reg):
    h = 46
    gate_run(reg, price_run(h, {"ridge_reg": share(0.5), "xgb_reg": noise()}, seed=1), "regression")
    d = gate_run(reg, price_run(h, {"ridge_reg": share(0.0), "xgb_reg": noise()}, seed=2), "regression")
    assert not d["promoted"] and d["name"] == f"ridge_reg_{h}h" and not d["passed"]
    assert d["champion_after"]["name"] == f"random_walk_{h}h"
    last = reg.history(h)[-1]
    assert last["name"] == f"random_walk_{h}h" and "no longer passes the gate" in last["reason"]
    assert "not significantly lower" in last["reason"]  # which test failed, in words
    # nothing passes the next time either: the newer random walk replaces the older one
    again = gate_run(reg, price_run(h, {"ridge_reg": noise(), "xgb_reg": noise()}, seed=3), "regression")
    assert again["champion_after"] == {"name": f"random_walk_{h}h", "version": d["champion_after"]["version"] + 1}


# --- volatility --------------------------------------------------------------------------------------

def vol_run(horizon, har_quality, seed=0):
    """Realised variance around a persistent log-variance path; the baselines: its unconditional level, a
    smoothed lagged estimate (ewma, the best of them) and a noisier one (vol_168); `har` knows the path up to
    log-noise of size `har_quality` (0: exact)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-03-01", periods=N_FOLDS * HOURS, freq="h", tz="UTC")
    fold = np.repeat(np.arange(1, N_FOLDS + 1), HOURS)
    rows = []
    for coin in COINS:
        x = np.zeros(len(ts))
        for i in range(1, len(ts)):
            x[i] = 0.98 * x[i - 1] + 0.2 * rng.standard_normal()
        var = 1e-3 * np.exp(x)
        rv = var * rng.chisquare(24, len(ts)) / 24
        lagged = np.r_[var[:1], var[:-1]]
        rows.append(pd.DataFrame({
            "coin": coin, "ts": ts, "fold": fold, "rv": rv, "unconditional": np.full(len(ts), rv.mean()),
            "ewma": lagged, "vol_168": lagged * np.exp(0.6 * rng.standard_normal(len(ts))),
            "har": var * np.exp(har_quality * rng.standard_normal(len(ts)))}))
    names = ["unconditional", "ewma", "vol_168", "har"]
    return SimpleNamespace(horizon=horizon, predictions=pd.concat(rows, ignore_index=True),
                           bundles={n: bundle(n, horizon, "volatility") for n in names},
                           lineage={"folds": [{"fold": k} for k in range(1, N_FOLDS + 1)]})


def test_volatility_is_gated_on_qlike_against_the_best_baseline(reg):
    h = 47
    weak = gate_tests(vol_run(h, har_quality=0.33), "volatility")["har"]
    assert weak.baseline == "ewma"  # the lowest QLIKE of unconditional, ewma and vol_168
    uncond = gate_tests(SimpleNamespace(**{**vol_run(h, 0.33).__dict__, "bundles": {
        n: bundle(n, h, "volatility") for n in ("unconditional", "har")}}), "volatility")["har"]
    assert uncond.passed and not weak.passed  # it beats the unconditional variance, not the best baseline
    d = gate_run(reg, vol_run(h, har_quality=0.0), "volatility")
    assert d["promoted"] and d["metric"] == "qlike" and d["baseline_name"] == "ewma"
    champ = reg.champion(h, "volatility")
    assert champ["name"] == f"har_{h}h" and champ["alias"] == champion_alias(h, "volatility") == f"champion-vol-{h}h"
    assert reg.status()["models"][f"vol-{h}h"]["name"] == f"har_{h}h"
    assert reg.history(h, "volatility")[0]["name"] == f"ewma_{h}h"  # the first champion: the gate's baseline
    assert reg.champion(h) is None  # the price champion is separate


def test_the_gate_says_what_it_lacks(reg):
    run = price_run(48, {"ridge_reg": share(0.5)})
    with pytest.raises(GateError, match="unknown task"):
        gate_tests(run, "ranking")
    assert gate_run(reg, run, "classification")["skipped"]  # a price run has no classifier here: nothing to gate
    del run.bundles["random_walk"]
    with pytest.raises(GateError, match="needs the random_walk baseline"):
        gate_run(reg, run, "regression")
    run = price_run(48, {"ridge_reg": share(0.5)})
    run.predictions = run.predictions.drop(columns="ridge_reg")
    with pytest.raises(GateError, match=r"lack columns \['ridge_reg'\]"):
        gate_tests(run, "regression")


# --- the false-promotion rate on block-permuted labels (slow) ----------------------------------------

def with_shrunk_candidate(run, source="ridge_reg", k=0.02):
    """Add a candidate that forecasts k times `source`: a near-random-walk rule whose MAE beats the random walk's
    about half the time by chance (what the old point rule promoted)."""
    run.predictions[f"{source}_shrunk"] = k * run.predictions[source]
    run.bundles[f"{source}_shrunk"] = SimpleNamespace(name=f"{source}_shrunk", task="regression", is_constant=False)
    return run


def false_promotions(frame, n_permutations, models, seed=0, horizon=24):
    """Per permutation: whether the gate would promote any candidate, and whether the old point rule would."""
    from cryptosentinel.fitting import train_horizon

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_permutations):
        run = with_shrunk_candidate(train_horizon(block_permuted(frame, rng), horizon, n_folds=4, models=models,
                                                  n_jobs=1))
        tests = gate_tests(run, "regression")
        p = run.predictions
        mae = {n: (p["y_ret"] - p[n]).abs().mean() for n in tests}
        out.append({"gate": any(t.passed for t in tests.values()),
                    "point_rule": min(mae.values()) < run.predictions["y_ret"].abs().mean(),
                    "min_p_holm": min(t.p_holm for t in tests.values())})
    return pd.DataFrame(out)


@pytest.mark.slow
def test_the_gate_promotes_noise_in_at_most_5_percent_of_block_permuted_label_sets():
    from builders import feature_frame, simulated_prices

    frame = feature_frame(simulated_prices(["bitcoin", "ethereum"], "2024-01-01", "2024-04-01"), with_close=True)
    runs = false_promotions(frame, 20, ["ridge_reg", "hgb_reg"])
    rate = runs["gate"].mean()
    lo, hi = stats.binomtest(int(runs["gate"].sum()), len(runs)).proportion_ci(0.95)
    print(f"false promotions {int(runs['gate'].sum())}/{len(runs)} = {rate:.0%} (95% CI {lo:.0%}-{hi:.0%}); "
          f"the point rule would have promoted in {runs['point_rule'].mean():.0%}")
    assert len(runs) >= 20 and rate <= 0.05
