"""Alert rules (each fires on its case, none on a calm market), the cooldown, the open-alert status, and
the performance checks (a bad champion breaches, a good one does not)."""

import math

import numpy as np
import pandas as pd
import pytest
from builders import feature_frame, simulated_prices

from cryptosentinel.alerts import (
    Breach,
    check_performance,
    daily_forecasts,
    evaluate_alerts,
    open_alerts,
    predictions_group,
    raise_alerts,
    record_performance,
    rolling_skill,
    validated_predictions,
    watch,
)
from cryptosentinel.config import ConfigError, DataValidationError, MonitoringSettings, Settings, get_settings
from cryptosentinel.monitoring import DriftReport
from cryptosentinel.notify import Alert, Notifier
from cryptosentinel.store import PRICES, Staleness, features_group

pytestmark = pytest.mark.code

T0 = pd.Timestamp("2024-03-01", tz="UTC")


def thresholds(**monitoring) -> Settings:
    """Settings without a .env file, with these monitoring thresholds."""
    return Settings(_env_file=None, monitoring=monitoring)


@pytest.fixture()
def ms() -> Settings:
    return thresholds()


def calm(coins=("bitcoin", "ethereum"), n=800, seed=1) -> pd.DataFrame:
    """A quiet market: small moves, no drawdown, RSI mid-range, steady volatility."""
    rng = np.random.default_rng(seed)
    frames = [pd.DataFrame({"coin": c, "ts": pd.date_range(T0 - pd.Timedelta(hours=n), periods=n, freq="h"),
                            "ret_1": rng.normal(0, 0.003, n), "ret_24": rng.normal(0, 0.01, n),
                            "drawdown_168": -np.abs(rng.normal(0, 0.02, n)), "rsi_14": rng.uniform(40, 60, n),
                            "vol_24": 0.01 + rng.normal(0, 0.001, n)}) for c in coins]
    return pd.concat(frames, ignore_index=True)


def with_last(features: pd.DataFrame, coin: str, **values) -> pd.DataFrame:
    f = features.copy()
    last = f.index[f["coin"] == coin][-1]
    for col, v in values.items():
        f.loc[last, col] = v
    return f


def fired(alerts) -> set[tuple[str, str | None, str]]:
    return {(a.rule, a.coin, a.severity) for a in alerts}


def test_calm_market_fires_nothing(ms):
    f = calm()
    assert evaluate_alerts(f, f, now=T0, settings=ms) == []


CASES = [
    ({"ret_1": math.log(1.06)}, ("price_move_1h", "warning")),
    ({"ret_1": math.log(0.85)}, ("price_move_1h", "critical")),
    ({"ret_24": math.log(0.94)}, ("price_move_24h", "warning")),
    ({"ret_24": math.log(1.12)}, ("price_move_24h", "critical")),
    ({"drawdown_168": -0.18}, ("drawdown", "warning")),
    ({"drawdown_168": -0.30}, ("drawdown", "critical")),
    ({"rsi_14": 78.0}, ("rsi_overbought", "info")),
    ({"rsi_14": 22.0}, ("rsi_oversold", "info")),
    ({"vol_24": 0.0138}, ("volatility_spike", "warning")),  # about 3.8 standard deviations
    ({"vol_24": 0.03}, ("volatility_spike", "critical")),
]


@pytest.mark.parametrize(("change", "expected"), CASES)
def test_each_market_rule_fires_on_its_case(ms, change, expected):
    f = with_last(calm(), "ethereum", **change)
    alerts = evaluate_alerts(f, f, now=T0, settings=ms)
    assert fired(alerts) == {(expected[0], "ethereum", expected[1])}
    a = alerts[0]
    assert a.fired_at == T0 and a.message and a.values
    assert all(k in a.values for k in {"price_move_1h": ["change", "window_h"], "price_move_24h": ["change"],
                                       "drawdown": ["drawdown"], "rsi_overbought": ["rsi"], "rsi_oversold": ["rsi"],
                                       "volatility_spike": ["z", "vol_24"]}[a.rule])


def test_just_below_the_thresholds_fires_nothing(ms):
    f = with_last(calm(), "bitcoin", ret_1=math.log(1.049), ret_24=math.log(0.951), drawdown_168=-0.149, rsi_14=69.9)
    assert evaluate_alerts(f, f, now=T0, settings=ms) == []


def test_thresholds_come_from_settings():
    f = with_last(calm(), "bitcoin", ret_1=math.log(1.03))
    assert fired(evaluate_alerts(f, f, now=T0, settings=thresholds(alert_move_warning=0.02)))
    assert not evaluate_alerts(f, f, now=T0, settings=thresholds())


def drift_report(detected: bool) -> DriftReport:
    return DriftReport(ran_checks=["FeatureDrift", "MultivariateDrift"], feature_scores={"vol_24": 0.9, "hour": 0.01},
                       drifted_features=["vol_24"] if detected else [], label_drift_score=None,
                       multivariate_score=0.99 if detected else 0.7, drift_detected=detected,
                       reasons=["the domain classifier tells the windows apart"] if detected else [],
                       thresholds={}, reference={}, current={})


def test_drift_skill_and_stale_rules(ms):
    f = calm()
    assert fired(evaluate_alerts(f, f, drift=drift_report(True), now=T0, settings=ms)) == {("drift", None, "warning")}
    assert evaluate_alerts(f, f, drift=drift_report(False), now=T0, settings=ms) == []
    breach = Breach("model_skill", 24, "v2", 1.3, 1.05, 200, "worse than the random walk")
    assert fired(evaluate_alerts(f, f, skill=[breach], now=T0, settings=ms)) == {("model_skill", None, "warning")}
    # stale: from the prices' newest bar, from a store Staleness, or from ages in hours
    later = T0 + pd.Timedelta(hours=5)
    assert fired(evaluate_alerts(f, None, now=later, settings=ms)) == {
        ("stale_data", "bitcoin", "warning"), ("stale_data", "ethereum", "warning")}
    st = Staleness(now=later, newest={"bitcoin": later - pd.Timedelta(hours=30)}, missing=("solana",))
    assert fired(evaluate_alerts(None, None, staleness=st, now=later, settings=ms)) == {
        ("stale_data", "bitcoin", "critical"), ("stale_data", "solana", "critical")}
    assert evaluate_alerts(None, None, staleness={"bitcoin": 1.0}, now=later, settings=ms) == []


def test_alert_refuses_an_unknown_severity():
    with pytest.raises(ConfigError, match="severity"):
        Alert("x", "fatal", None, "m", {}, T0)


def test_cooldown(store, ms):
    f = with_last(calm(), "ethereum", drawdown_168=-0.18)  # the same data all along; staleness is not tested here
    at = lambda h: evaluate_alerts(f, f, staleness={}, now=T0 + pd.Timedelta(hours=h), settings=ms)  # noqa: E731
    assert len(raise_alerts(store, at(0), settings=ms)) == 1
    assert raise_alerts(store, at(1), settings=ms) == []  # same condition within the cooldown: once
    assert raise_alerts(store, at(5.9), settings=ms) == []
    again = raise_alerts(store, at(ms.monitoring.alert_cooldown_hours + 0.5), settings=ms)  # after the cooldown: again
    assert fired(again) == {("drawdown", "ethereum", "warning")}
    # an escalation is another severity: it fires at once
    worse = with_last(calm(), "ethereum", drawdown_168=-0.3)
    esc = raise_alerts(store, evaluate_alerts(worse, worse, staleness={}, now=T0 + pd.Timedelta(hours=7), settings=ms), settings=ms)
    assert fired(esc) == {("drawdown", "ethereum", "critical")}
    # another coin is another key
    other = with_last(calm(), "bitcoin", drawdown_168=-0.18)
    assert len(raise_alerts(store, evaluate_alerts(other, other, staleness={}, now=T0 + pd.Timedelta(hours=7), settings=ms),
                            settings=ms)) == 1
    assert len(store.runs("alert")) == 4  # one record per call that raised something


def test_cooldown_within_one_batch_and_from_settings(store):
    a = Alert("drift", "warning", None, "m", {}, T0)
    assert len(raise_alerts(store, [a, a], settings=thresholds())) == 1
    no_cooldown = thresholds(alert_cooldown_hours=0)
    assert len(raise_alerts(store, [Alert("drift", "warning", None, "m", {}, T0 + pd.Timedelta(minutes=1))],
                            settings=no_cooldown)) == 1


def test_cooldown_reads_past_many_records(store, ms):
    """More alert records than one page of the run log: the cooldown still sees the one that matters."""
    raise_alerts(store, [Alert("drift", "warning", None, "m", {}, T0)], settings=ms)
    for i in range(250):
        raise_alerts(store, [Alert(f"r{i}", "info", None, "m", {}, T0 + pd.Timedelta(seconds=i + 1))], settings=ms)
    assert raise_alerts(store, [Alert("drift", "warning", None, "m", {}, T0 + pd.Timedelta(hours=1))],
                        settings=ms) == []


def test_open_alerts_status(store, ms):
    f = with_last(with_last(calm(), "ethereum", drawdown_168=-0.3), "bitcoin", rsi_14=80.0)
    raise_alerts(store, evaluate_alerts(f, f, now=T0, settings=ms), settings=ms)
    status = open_alerts(store, now=T0 + pd.Timedelta(hours=1), settings=ms)
    assert status["open"] == 2
    assert status["by_severity"] == {"info": 1, "warning": 0, "critical": 1}
    assert {a["rule"] for a in status["latest"]} == {"drawdown", "rsi_overbought"}
    assert open_alerts(store, now=T0 + pd.Timedelta(hours=25), settings=ms)["open"] == 0
    assert open_alerts(store, now=T0 - pd.Timedelta(hours=1), settings=ms) == {
        "open": 0, "by_severity": {"info": 0, "warning": 0, "critical": 0}, "latest": []}


# --- performance checks: per coin, over the last `performance_window_days`, Kupiec on daily forecasts ----------

COINS = ("bitcoin", "ethereum", "solana")


def validated(error_ratio=0.8, cover80=0.8, cover95=0.95, days=40, version="v3", horizon=24, seed=0,
              start="2024-03-01", coins=COINS, bad_coin=None) -> pd.DataFrame:
    """Hourly validated forecasts of every coin over `days`; intervals hold on exactly `cover` of the days (each
    hour of a day alike, in random order). With `bad_coin`, only that coin has the given ratio and coverage."""
    rng = np.random.default_rng(seed)
    frames = []
    for coin in coins:
        n = days * 24
        rw = np.abs(rng.normal(0, 0.03, n)) + 1e-4
        r, c80, c95 = (error_ratio, cover80, cover95) if bad_coin in (None, coin) else (0.9, 0.8, 0.95)
        frames.append(pd.DataFrame({
            "coin": coin, "horizon": horizon, "model_version": version,
            "made_at": pd.date_range(start, periods=n, freq="h", tz="UTC"), "abs_error": rw * r, "rw_abs_error": rw,
            "inside_80": np.repeat(rng.permutation(np.arange(days) < round(c80 * days)), 24),
            "inside_95": np.repeat(rng.permutation(np.arange(days) < round(c95 * days)), 24)}))
    return pd.concat(frames, ignore_index=True)


def test_good_model_no_breach(ms):
    assert check_performance(validated(), ms) == []


def test_bad_model_breaches_on_every_coin(ms):
    breaches = check_performance(validated(error_ratio=1.3, cover80=0.5, cover95=0.7), ms)
    assert {(b.rule, b.coin) for b in breaches} == {(r, c) for c in COINS for r in
                                                    ("model_skill", "interval_coverage_80", "interval_coverage_95")}
    skill = next(b for b in breaches if b.rule == "model_skill")
    assert math.isclose(skill.value, 1.3) and math.isclose(skill.threshold, 1 + ms.monitoring.skill_tolerance)
    assert skill.n == 30 and skill.model_version == "v3" and skill.horizon == 24  # 30 days: 30 daily forecasts
    assert all(b.retrain_recommended for b in breaches)
    cover = next(b for b in breaches if b.rule == "interval_coverage_80")
    assert cover.threshold == 0.8 and cover.value < 0.6 and cover.pvalue < ms.monitoring.coverage_pvalue
    assert cover.coin in cover.message and "80%" in cover.message and "n=" not in cover.message
    assert f"of {cover.n} daily outcomes" in cover.message and "Kupiec p=" in cover.message


def test_one_coin_with_bad_coverage_breaches_alone(ms):
    """Per-coin judgement: solana's 80% intervals cover half of its last 30 days, the other coins are calibrated."""
    frame = validated(error_ratio=0.9, cover80=0.5, cover95=0.95, days=30, bad_coin="solana")
    breaches = check_performance(frame, ms)
    assert [(b.rule, b.coin) for b in breaches] == [("interval_coverage_80", "solana")]
    (b,) = breaches
    assert b.n == 30 and b.value == 0.5 and b.pvalue < 0.01
    alerts = evaluate_alerts(None, None, skill=breaches, now=T0, settings=ms)
    assert fired(alerts) == {("interval_coverage_80", "solana", "warning")}
    assert alerts[0].values["pvalue"] == b.pvalue


def test_coverage_breaches_at_the_kupiec_threshold(ms):
    """30 daily outcomes at 80%: 18 inside (Kupiec p ~ 0.012) passes at p < 0.01, 17 inside (p ~ 0.004) breaches;
    a looser `coverage_pvalue` of 0.05 flags 18 too; 30 of 30 (too wide, p ~ 0.0003) breaches as well."""
    from cryptosentinel.training import coverage_tests

    def frame(inside_days: int) -> pd.DataFrame:
        f = validated(days=30, coins=("bitcoin",))
        day = (f["made_at"] - f["made_at"].min()).dt.days
        return f.assign(inside_80=day.isin(range(inside_days)), inside_95=True)

    for k in (17, 18, 30):
        p = coverage_tests(np.arange(30) < k, 0.8).kupiec_pvalue
        assert (p < 0.01) is (k != 18), (k, p)
        # inside_95 is 30 of 30 at 95%: Kupiec p ~ 0.08, no breach
        assert [b.rule for b in check_performance(frame(k), ms)] == ([] if k == 18 else ["interval_coverage_80"])
    loose = thresholds(coverage_pvalue=0.05)
    assert [b.rule for b in check_performance(frame(18), loose)] == ["interval_coverage_80"]
    (wide,) = check_performance(frame(30), ms)
    assert wide.value == 1.0 and "too wide" in wide.message


def test_only_the_champion_and_the_window_count(ms):
    old_bad = validated(error_ratio=2.0, cover80=0.3, version="v2", start="2024-01-01")
    new_good = validated(error_ratio=0.9, version="v3", start="2024-03-01")
    assert check_performance(pd.concat([old_bad, new_good]), ms) == []
    # the last `performance_window_days` decide: a model that got worse over the last 30 days breaches
    drift = pd.concat([validated(0.5, days=60, seed=1), validated(1.5, days=30, seed=2, start="2024-04-30")])
    assert {b.rule for b in check_performance(drift, ms)} == {"model_skill"}
    # ... and rows older than the window do not: 30 bad days followed by 31 good ones
    recovered = pd.concat([validated(1.5, days=30, seed=1), validated(0.9, days=31, seed=2, start="2024-03-31")])
    assert check_performance(recovered, ms) == []
    # each horizon is judged on its own
    two = pd.concat([validated(0.9, horizon=24), validated(1.4, horizon=1, seed=3)])
    assert {(b.rule, b.horizon) for b in check_performance(two, ms)} == {("model_skill", 1)}


def test_too_few_forecasts_no_verdict(ms):
    """Fewer than `skill_min_predictions` daily (non-overlapping) forecasts per coin: no verdict, however bad;
    20 days of hourly forecasts are 480 rows per coin but only 20 independent ones."""
    assert check_performance(validated(error_ratio=3.0, cover80=0.2, cover95=0.3, days=20), ms) == []
    assert check_performance(validated(error_ratio=3.0, days=20), thresholds(skill_min_predictions=20))
    # a week-ahead horizon has one independent forecast a week: 30 days never reach a verdict
    assert check_performance(validated(error_ratio=3.0, cover80=0.2, horizon=168, days=40), ms) == []


def test_daily_forecasts_do_not_overlap():
    f = validated(days=3, coins=("bitcoin", "ethereum"))
    daily = daily_forecasts(f.iloc[:-5], 24)  # ethereum's newest 5 hours missing
    assert daily.groupby("coin").size().to_dict() == {"bitcoin": 3, "ethereum": 3}
    assert (daily.groupby("coin")["made_at"].diff().dropna() >= pd.Timedelta(hours=24)).all()
    assert set(daily[daily.coin == "ethereum"]["made_at"].dt.hour) == {18}  # anchored at its newest forecast
    assert len(daily_forecasts(validated(days=30, coins=("bitcoin",)), 168)) == 5  # one every 7 days


def test_performance_refuses_missing_columns(ms):
    with pytest.raises(DataValidationError, match="rw_abs_error"):
        check_performance(validated().drop(columns=["rw_abs_error"]), ms)


def test_record_performance_and_retrain_flag(store, monkeypatch):
    breaches = check_performance(validated(error_ratio=1.3), thresholds())
    rec = record_performance(store, breaches, thresholds())
    assert rec["retrain_recommended"] is True and rec["retrain"] is False
    monkeypatch.setenv("CRYPTOSENTINEL_RETRAIN_ON_BREACH", "true")
    get_settings.cache_clear()
    rec = record_performance(store, breaches)
    assert rec["retrain"] is True
    assert store.runs("performance")[0]["record"]["breaches"][0]["rule"] == "model_skill"
    assert record_performance(store, [])["retrain_recommended"] is False


def test_injected_settings_win_over_the_environment(store, monkeypatch):
    """Given settings are used as given: the process settings say retrain, the injected ones do not."""
    given = thresholds()  # read before the environment changes
    monkeypatch.setenv("CRYPTOSENTINEL_RETRAIN_ON_BREACH", "true")
    monkeypatch.setenv("CRYPTOSENTINEL_SKILL_TOLERANCE", "5")
    get_settings.cache_clear()
    assert get_settings().monitoring.retrain_on_breach is True
    breaches = check_performance(validated(error_ratio=1.3), given)
    assert {b.rule for b in breaches} == {"model_skill"} and len(breaches) == len(COINS)
    assert check_performance(validated(error_ratio=1.3)) == []  # the process settings: tolerance 5
    assert record_performance(store, breaches, given)["retrain"] is False


def test_unknown_move_window_is_a_config_error():
    f = calm()
    with pytest.raises(ConfigError, match="return windows"):
        evaluate_alerts(f, f, now=T0, settings=thresholds(alert_move_windows=[5]))
    assert isinstance(thresholds(alert_move_windows="24,1").monitoring, MonitoringSettings)


def test_rolling_skill_is_what_check_performance_judges(ms):
    """One computation: the breach's value is the coin's relative MAE from `rolling_skill` over the same window."""
    frame = validated(error_ratio=1.3, days=45, coins=("bitcoin",))
    recent = frame[frame["made_at"] > frame["made_at"].max() - pd.Timedelta(days=30)]
    skill = rolling_skill(recent, window=len(recent), by=("coin",)).iloc[0]
    (breach,) = [b for b in check_performance(frame, ms) if b.rule == "model_skill"]
    assert math.isclose(breach.value, skill["relative_mae"]) and skill["n"] == 30 * 24 and breach.n == 30
    # rows without both errors are left out, by both
    holes = frame.assign(abs_error=frame["abs_error"].where(frame.index % 10 != 0))
    assert rolling_skill(holes, window=10_000, by=("coin",))["n"].iloc[0] == 45 * 24 - 108


# --- the monitoring pass after a prediction run -------------------------------------------------------------

def test_watch_after_a_prediction_run(store):
    prices = simulated_prices(["bitcoin", "ethereum"], "2024-01-01", "2024-02-10", seed=3)
    features = feature_frame(prices)
    as_of = features["ts"].max()
    history = validated(error_ratio=1.3).rename(columns={"model_version": "model"}).assign(validated=True)
    store.upsert(PRICES, prices)
    store.upsert(features_group(store), features)
    store.upsert(store.get_or_create_feature_group(predictions_group(24)), history)
    sent = []

    class Recorder(Notifier):
        def send(self, alerts):
            sent.extend(alerts)
            return {"test": "sent"}

    given = thresholds(retrain_on_breach=True)
    out = watch(store, [24], ["bitcoin", "ethereum"], live_now=False, as_of=as_of, settings=given, notifier=Recorder())
    assert set(out) == {"drift", "performance", "alerts_raised"} and out["drift"] is None
    assert out["performance"]["retrain_recommended"] is True and out["performance"]["retrain"] is True
    assert any("random walk" in m for m in out["alerts_raised"]) and len(sent) == len(out["alerts_raised"])
    assert not any(a.rule == "stale_data" for a in sent)  # a snapshot is judged against its own last bar
    assert store.runs("performance")[0]["record"]["retrain"] is True
    # live data an hour after the limit: stale; the defaults do not retrain
    later = watch(store, [24], ["bitcoin", "ethereum"], live_now=True, as_of=as_of, settings=thresholds(),
                  now=as_of + pd.Timedelta(hours=4), notifier=Recorder())
    assert later["performance"]["retrain"] is False
    assert sum("newest bar is 4.0 h old" in m for m in later["alerts_raised"]) == 2
    assert validated_predictions(store, [24, 1]).shape[0] == len(history)
