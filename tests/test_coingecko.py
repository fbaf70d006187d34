"""The CoinGecko client and fetchers against a loopback server replaying recorded answers."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from coingecko_server import (
    CLOUDFLARE_429_HTML,
    ReplayServer,
    Reply,
    file_reply,
    html_reply,
    json_reply,
)

from cryptosentinel.coingecko import CoinGeckoClient, RateLimiter, fetch_daily, fetch_hourly
from cryptosentinel.config import ConfigError, Settings, SourceError
from cryptosentinel.ingest import ATTRIBUTION, validate_prices
from cryptosentinel.sources import load_prices

pytestmark = [pytest.mark.code, pytest.mark.shared_data]

RANGE = "/coins/bitcoin/market_chart/range"
CHART = "/coins/bitcoin/market_chart"
UTC = "UTC"


@pytest.fixture
def fixtures(shared_data):
    return shared_data / "coingecko_fixtures"


@pytest.fixture
def server():
    with ReplayServer() as srv:
        yield srv


@pytest.fixture
def waits():
    return []


def client(server, waits, **kwargs) -> CoinGeckoClient:
    opts = dict(base_url=server.url, sleep=waits.append, backoff_base=0.01, max_wait=0.05, timeout=5.0)
    return CoinGeckoClient(**(opts | kwargs))


# ---------------------------------------------------------------------------------------------- parsing
def test_hourly_fixture_becomes_whole_hour_bars(server, waits, fixtures):
    raw = json.loads((fixtures / "market_chart_bitcoin_usd_days60_hourly.json").read_text())
    server.add(RANGE, file_reply(fixtures / "market_chart_bitcoin_usd_days60_hourly.json"))
    start, end = pd.Timestamp("2022-11-20 21:00", tz=UTC), pd.Timestamp("2023-01-19 20:00", tz=UTC)
    with client(server, waits) as cg:
        df = fetch_hourly(cg, "bitcoin", "usd", start, end)

    # one call for a 60-day window, with unix-second bounds
    (req,) = server.seen(RANGE)
    assert req.query == {"vs_currency": "usd", "from": str(int(start.timestamp())), "to": str(int(end.timestamp()))}
    assert "x-cg-demo-api-key" not in req.headers and "x-cg-pro-api-key" not in req.headers

    validate_prices(df)
    assert (df["ts"] == df["ts"].dt.floor("h")).all()  # bars on the hour
    assert df["ts"].is_monotonic_increasing and df["ts"].diff().dropna().eq(pd.Timedelta("1h")).all()
    assert len(df) == 1439  # 1440 distinct hours, less the partial hour of the "now" point
    assert df["ts"].iloc[0] == start and df["ts"].iloc[-1] == pd.Timestamp("2023-01-19 19:00", tz=UTC)
    assert df["close"].iloc[0] == pytest.approx(raw["prices"][0][1])  # 2022-11-20 21:00:14
    assert df["close"].iloc[-1] == pytest.approx(raw["prices"][-3][1])  # 2023-01-19 19:02:07
    now_price = raw["prices"][-1][1]  # the "now" point, 2023-01-19 20:11:18
    assert not (df[["open", "high", "low", "close"]] == now_price).any().any()
    assert df["market_cap"].iloc[-1] == pytest.approx(raw["market_caps"][-3][1])
    assert df["volume"].iloc[-1] == pytest.approx(raw["total_volumes"][-3][1])  # rolling 24 h volume, last in hour
    assert set(df["source"]) == {"coingecko"} and set(df["granularity"]) == {"1h"}


def test_hour_with_two_points_builds_ohlc(server, waits, fixtures):
    raw = json.loads((fixtures / "market_chart_bitcoin_usd_days60_hourly.json").read_text())
    server.add(RANGE, file_reply(fixtures / "market_chart_bitcoin_usd_days60_hourly.json"))
    with client(server, waits) as cg:
        df = fetch_hourly(cg, "bitcoin", "usd", "2022-11-20 21:00", "2023-01-19 20:00")
    pts = pd.DataFrame(raw["prices"], columns=["ms", "price"])
    pts["hour"] = pd.to_datetime(pts["ms"], unit="ms", utc=True).dt.floor("h")
    hour = pd.Timestamp("2022-12-28 08:00", tz=UTC)
    inside = pts[pts["hour"] == hour]["price"]
    assert len(inside) == 2
    bar = df.set_index("ts").loc[hour]
    assert (bar["open"], bar["close"]) == (pytest.approx(inside.iloc[0]), pytest.approx(inside.iloc[-1]))
    assert (bar["high"], bar["low"]) == (pytest.approx(inside.max()), pytest.approx(inside.min()))


def test_long_hourly_window_is_split_in_90_day_slices(server, waits, fixtures):
    server.add(RANGE, file_reply(fixtures / "market_chart_bitcoin_usd_days60_hourly.json"))
    with client(server, waits) as cg:
        fetch_hourly(cg, "bitcoin", "usd", "2022-09-01", "2023-01-19 20:00")
    bounds = [(int(r.query["from"]), int(r.query["to"])) for r in server.seen(RANGE)]
    assert len(bounds) == 2
    assert all(0 < hi - lo <= 90 * 86400 for lo, hi in bounds)
    assert bounds[0][1] == bounds[1][0]


def test_daily_fixture_with_pro_key(server, waits, fixtures):
    raw = json.loads((fixtures / "market_chart_bitcoin_usd_days1826_daily.json").read_text())
    server.add(CHART, file_reply(fixtures / "market_chart_bitcoin_usd_days1826_daily.json"))
    with client(server, waits, api_key="pro-secret", plan="pro") as cg:
        df = fetch_daily(cg, "bitcoin", "usd", "2018-10-26", "2023-10-26")
    (req,) = server.seen(CHART)
    assert req.headers["x-cg-pro-api-key"] == "pro-secret" and "x-cg-demo-api-key" not in req.headers
    assert req.query["interval"] == "daily" and int(req.query["days"]) >= 1826
    assert len(df) == 1826  # 1827 points less the trailing "now" point
    assert (df["ts"] == df["ts"].dt.normalize()).all()
    assert df["ts"].iloc[0] == pd.Timestamp("2018-10-26", tz=UTC)
    assert df["ts"].iloc[-1] == pd.Timestamp("2023-10-25", tz=UTC)
    assert df["close"].iloc[0] == pytest.approx(6458.191521836801)
    assert df["close"].iloc[-1] == pytest.approx(raw["prices"][-2][1])  # 33846.72, not the "now" 34616.52
    assert (df["open"] == df["close"]).all() and (df["high"] == df["close"]).all()
    assert set(df["granularity"]) == {"1d"}


def test_markets_with_demo_key(server, waits, fixtures):
    server.add("/coins/markets", file_reply(fixtures / "coins_markets_usd_page1.json"))
    with client(server, waits, api_key="demo-secret") as cg:
        rows = cg.markets("usd", ids=["bitcoin", "ethereum"], per_page=100)
    (req,) = server.seen("/coins/markets")
    assert req.headers["x-cg-demo-api-key"] == "demo-secret" and "x-cg-pro-api-key" not in req.headers
    assert req.query == {"vs_currency": "usd", "ids": "bitcoin,ethereum", "per_page": "100", "page": "1"}
    assert len(rows) == 100
    ids = {r["id"] for r in rows}
    assert {"bitcoin", "ethereum", "binancecoin", "ripple", "cardano", "dogecoin", "solana", "litecoin"} <= ids
    assert rows[0]["id"] == "bitcoin" and rows[0]["current_price"] == 21109


def test_simple_price_query(server, waits):
    server.add("/simple/price", json_reply({"bitcoin": {"usd": 67187.3}}))
    with client(server, waits) as cg:
        assert cg.simple_price(["bitcoin"], "usd") == {"bitcoin": {"usd": 67187.3}}
    (req,) = server.seen("/simple/price")
    assert req.query["ids"] == "bitcoin" and req.query["vs_currencies"] == "usd"


# ---------------------------------------------------------------------------------------------- retries
def test_429_with_retry_after_is_honoured_and_counted(server, fixtures):
    server.add("/coins/markets",
               file_reply(fixtures / "error_429_rate_limit.json", status=429, headers={"Retry-After": "2"}),
               file_reply(fixtures / "coins_markets_usd_page1.json"))
    waits: list[float] = []
    with CoinGeckoClient(base_url=server.url, sleep=waits.append) as cg:
        assert len(cg.markets()) == 100
    assert waits == [2.0]  # Retry-After, not the backoff
    assert cg.stats.as_dict() == {"calls": 2, "retries": 1, "status_counts": {"200": 1, "429": 1}}


def test_cloudflare_html_429_is_rate_limited(server, waits, fixtures):
    server.add("/coins/markets", html_reply(CLOUDFLARE_429_HTML, 429),
               file_reply(fixtures / "coins_markets_usd_page1.json"))
    with client(server, waits) as cg:
        assert len(cg.markets()) == 100
    assert cg.stats.retries == 1 and cg.stats.status_counts[429] == 1

    server.add("/coins/markets", html_reply(CLOUDFLARE_429_HTML, 429))
    with client(server, waits, max_retries=2) as cg, pytest.raises(SourceError, match=r"/coins/markets failed after 3 attempt\(s\); last status: 429"):
        cg.markets()


def test_500_exhausts_retries_and_returns_nothing_partial(server, waits, fixtures):
    # the first 90-day slice answers, the second fails: no frame comes back
    server.add(RANGE, file_reply(fixtures / "market_chart_bitcoin_usd_days60_hourly.json"),
               json_reply({"error": "internal"}, status=500))
    with client(server, waits, max_retries=3) as cg:
        result = None
        with pytest.raises(SourceError) as err:
            result = fetch_hourly(cg, "bitcoin", "usd", "2022-09-01", "2023-01-19 20:00")
    assert result is None
    assert f"CoinGecko {RANGE} failed after 4 attempt(s); last status: 500" in str(err.value)
    assert cg.stats.retries == 3
    assert cg.stats.status_counts == {200: 1, 500: 4}
    assert len(waits) == 3 and all(w <= 0.05 for w in waits)  # backoff capped by max_wait


def test_timeout_is_retried_then_fails(server, waits, fixtures):
    server.add("/coins/markets", Reply(hang=True), file_reply(fixtures / "coins_markets_usd_page1.json"))
    with client(server, waits, timeout=1.0) as cg:  # the hung reply times out; 1 s leaves the next one room
        assert len(cg.markets()) == 100
    assert cg.stats.status_counts == {"timeout": 1, 200: 1} and cg.stats.retries == 1

    server.add("/coins/markets", Reply(hang=True))
    with client(server, waits, timeout=1.0, max_retries=1) as cg, pytest.raises(SourceError, match="last status: timeout"):
        cg.markets()
    assert cg.stats.status_counts == {"timeout": 2}


@pytest.mark.parametrize("status", [401, 400])
def test_error_10012_says_what_to_do(server, waits, fixtures, status):
    server.add(CHART, file_reply(fixtures / "error_10012_time_range.json", status=status))
    with client(server, waits) as cg, pytest.raises(SourceError) as err:
        fetch_daily(cg, "bitcoin", "usd", "2018-10-26", "2023-10-26")
    msg = str(err.value)
    assert "at most 365 days" in msg and "--days 365" in msg and "CRYPTOSENTINEL_COINGECKO_API_KEY" in msg
    assert "10012" in msg and str(status) in msg
    assert cg.stats.calls == 1 and cg.stats.retries == 0  # not retried


def test_other_4xx_quotes_coingecko(server, waits):
    server.add("/coins/notacoin/market_chart", json_reply({"error": "coin not found"}, status=404))
    with client(server, waits) as cg, pytest.raises(SourceError, match="answered 404: coin not found"):
        cg.market_chart("notacoin", "usd", days=1)


def test_settings_pick_root_header_and_limits(monkeypatch):
    monkeypatch.setenv("CRYPTOSENTINEL_COINGECKO_API_KEY", "pro-key-123")
    monkeypatch.setenv("CRYPTOSENTINEL_COINGECKO_PLAN", "pro")
    cg = CoinGeckoClient.from_settings(Settings(_env_file=None))
    assert cg.base_url == CoinGeckoClient.PRO_ROOT and cg._http.headers["x-cg-pro-api-key"] == "pro-key-123"
    assert "pro-key-123" not in repr(cg)
    cg.close()
    with pytest.raises(ConfigError, match="needs an API key"):
        CoinGeckoClient(plan="pro")


def test_rate_limiter_sliding_window():
    now = [0.0]
    sleeps: list[float] = []

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    lim = RateLimiter(2, period=60, clock=lambda: now[0], sleep=sleep)
    assert [lim.acquire(), lim.acquire()] == [0.0, 0.0]
    now[0] = 10.0
    assert lim.acquire() == 50.0 and now[0] == 60.0
    now[0] = 130.0
    assert lim.acquire() == 0.0 and sleeps == [50.0]


def test_client_rate_limit_spaces_calls(server):
    server.add("/ping", json_reply({"gecko_says": "(V3) To the Moon!"}))
    waits: list[float] = []
    with CoinGeckoClient(base_url=server.url, calls_per_minute=2, sleep=waits.append) as cg:
        for _ in range(3):
            cg.ping()
    assert len(waits) == 1 and 55 < waits[0] <= 60


# ---------------------------------------------------------------------------------------------- load_prices
def test_load_prices_from_coingecko(server, fixtures):
    server.add(RANGE, file_reply(fixtures / "market_chart_bitcoin_usd_days60_hourly.json"))
    settings = Settings(_env_file=None, coingecko_base_url=server.url)
    df, rec = load_prices("coingecko", ["bitcoin"], start="2022-11-20 21:00", end="2023-01-19 20:00",
                          settings=settings)
    assert rec.source == "coingecko" and rec.rows == len(df) == 1439
    assert rec.http_status_counts == {"200": 1} and rec.retries == 0
    assert rec.start == pd.Timestamp("2022-11-20 21:00", tz=UTC) and rec.gaps == []
    assert any(ATTRIBUTION in n for n in rec.notes)
    json.dumps(rec.to_dict())


def test_load_prices_coingecko_failure_for_one_coin_fails_all(server, fixtures):
    server.add(RANGE, file_reply(fixtures / "market_chart_bitcoin_usd_days60_hourly.json"))
    server.add("/coins/ethereum/market_chart/range", json_reply({"error": "coin not found"}, status=404))
    settings = Settings(_env_file=None, coingecko_base_url=server.url)
    with pytest.raises(SourceError, match="ethereum"):
        load_prices("coingecko", ["bitcoin", "ethereum"], start="2022-11-20 21:00", end="2023-01-19 20:00",
                    settings=settings)


def test_auto_uses_coingecko_when_it_answers(server, fixtures):
    server.add("/ping", json_reply({"gecko_says": "(V3) To the Moon!"}))
    server.add(RANGE, file_reply(fixtures / "market_chart_bitcoin_usd_days60_hourly.json"))
    settings = Settings(_env_file=None, coingecko_base_url=server.url)
    df, rec = load_prices("auto", ["bitcoin"], start="2022-11-20 21:00", end="2023-01-19 20:00", settings=settings)
    assert rec.source == "coingecko" and rec.http_status_counts == {"200": 2}


def test_auto_falls_back_to_simulator_with_a_warning(server, caplog):
    server.add("/ping", html_reply(CLOUDFLARE_429_HTML, 429))
    settings = Settings(_env_file=None, coingecko_base_url=server.url)
    with caplog.at_level(logging.WARNING, logger="cryptosentinel.sources"):
        df, rec = load_prices("auto", ["bitcoin", "ethereum"], days=3, settings=settings)
    assert rec.source == "synthetic" and set(df["source"]) == {"synthetic"}
    assert rec.rows == 2 * 3 * 24
    assert rec.http_status_counts == {"429": 1}
    assert "fell back to the simulator" in rec.notes[0] and "429" in rec.notes[0]
    assert any(r.levelno == logging.WARNING and "falling back to the simulator" in r.getMessage() for r in caplog.records)
    with pytest.raises(SourceError):  # an explicit coingecko source does not fall back
        load_prices("coingecko", ["bitcoin"], days=3, settings=Settings(_env_file=None, coingecko_base_url=server.url,
                                                                         coingecko_max_retries=0))
