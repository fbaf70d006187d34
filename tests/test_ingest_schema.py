"""The raw price schema, `validate_prices` messages, `find_gaps`, `IngestRecord` and `load_prices` windows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cryptosentinel.config import ConfigError, DataValidationError, Settings
from cryptosentinel.ingest import PRICE_COLUMNS, find_gaps, last_full_bar, price_schema, validate_prices
from cryptosentinel.sources import IngestRecord, load_prices

pytestmark = pytest.mark.data


def frame(n: int = 4, coin: str = "bitcoin", granularity: str = "1h") -> pd.DataFrame:
    step = "h" if granularity == "1h" else "D"
    ts = pd.date_range("2024-01-01", periods=n, freq=step, tz="UTC")
    close = 100.0 + np.arange(n)
    return pd.DataFrame({"coin": coin, "ts": ts, "open": close - 0.5, "high": close + 1.0, "low": close - 1.0,
                         "close": close, "volume": 10.0, "market_cap": np.nan, "source": "csv",
                         "granularity": granularity})


def error_of(df) -> str:
    with pytest.raises(DataValidationError) as err:
        validate_prices(df)
    return str(err.value)


def test_valid_frame_passes_with_canonical_columns():
    df = frame().assign(volume=[1, 2, 3, 4])[list(reversed(PRICE_COLUMNS))]
    out = validate_prices(df)
    assert list(out.columns) == PRICE_COLUMNS
    assert out["volume"].dtype == "float64" and str(out["ts"].dtype) == "datetime64[ns, UTC]"
    price_schema.validate(out)  # the exported schema accepts it too


def test_daily_frame_passes_and_market_cap_may_be_missing():
    df = frame(3, granularity="1d")
    df.loc[0, "market_cap"] = 1e9
    validate_prices(df)


def test_naive_timestamps():
    msg = error_of(frame().assign(ts=lambda d: d["ts"].dt.tz_localize(None)))
    assert "column 'ts'" in msg and "naive" in msg and "tz-aware UTC" in msg


def test_string_timestamps():
    assert "column 'ts' must hold tz-aware UTC datetimes, got dtype object" in error_of(frame().assign(ts="2024-01-01"))


def test_text_in_numeric_columns():
    df = frame()
    df["close"] = df["close"].astype(object)
    df.loc[2, "close"] = "n/a"
    df["volume"] = ["1", "2", "3", "lots"]
    msg = error_of(df)
    assert "column 'close': not a number: 1 row(s)" in msg and "index 2" in msg and "'n/a'" in msg
    assert "column 'volume': not a number" in msg and "'lots'" in msg


def test_negative_prices_name_rows_and_count():
    df = frame(6)
    df.loc[[1, 4], "low"] = [-1.0, -2.0]
    msg = error_of(df)
    assert "column 'low': must be > 0: 2 row(s)" in msg
    assert "index 1 (bitcoin 2024-01-01T01:00:00+00:00): -1.0" in msg and "index 4" in msg


def test_negative_volume():
    assert "column 'volume': must be >= 0" in error_of(frame().assign(volume=[1.0, -1.0, 1.0, 1.0]))


def test_duplicate_timestamps():
    df = pd.concat([frame(3), frame(3).iloc[[1]]], ignore_index=True)
    msg = error_of(df)
    assert "duplicate (coin, ts)" in msg and "2 row(s)" in msg and "index 3" in msg


def test_same_ts_for_two_coins_is_fine():
    validate_prices(pd.concat([frame(3), frame(3, coin="ethereum")], ignore_index=True))


def test_unknown_coin():
    msg = error_of(frame().assign(coin=["bitcoin", "bitcoin", "shibcoin", "bitcoin"]))
    assert "column 'coin'" in msg and "unknown coin" in msg and "'shibcoin'" in msg and "CRYPTOSENTINEL_COINS" in msg


def test_coin_known_through_settings(monkeypatch):
    monkeypatch.setenv("CRYPTOSENTINEL_COINS", "bitcoin,shiba-inu")
    validate_prices(frame(coin="shiba-inu"), Settings(_env_file=None))


def test_empty_frame():
    assert "empty" in error_of(frame().iloc[:0])


def test_wrong_columns():
    msg = error_of(frame().drop(columns=["market_cap"]).assign(price=1.0))
    assert "missing ['market_cap']" in msg and "unexpected ['price']" in msg


def test_not_a_frame():
    assert "must be a pandas DataFrame" in error_of([{"coin": "bitcoin"}])


def test_envelope_and_bar_alignment():
    df = frame()
    df.loc[1, "high"] = df.loc[1, "open"] - 5
    df.loc[2, "low"] = df.loc[2, "close"] + 5
    df.loc[3, "ts"] = df.loc[3, "ts"] + pd.Timedelta(minutes=30)
    msg = error_of(df)
    assert "high < max(open, close)" in msg and "index 1" in msg
    assert "low > min(open, close)" in msg and "index 2" in msg
    assert "ts not on the bar" in msg and "index 3" in msg
    day = frame(2, granularity="1d")
    day.loc[1, "ts"] += pd.Timedelta(hours=1)
    assert "ts not on the bar" in error_of(day)


def test_bad_source_and_granularity():
    msg = error_of(frame().assign(source="excel", granularity="5m"))
    assert "source must be one of" in msg and "granularity must be '1h' or '1d'" in msg


def test_find_gaps_counts_missing_bars():
    df = frame(10).drop(index=[3, 4, 5, 8]).reset_index(drop=True)
    gaps = find_gaps(df)
    assert [(g["last_before"].hour, g["first_after"].hour, g["missing"]) for g in gaps] == [(2, 6, 3), (7, 9, 1)]


def test_record_to_dict_is_json_safe():
    rec = IngestRecord(source="csv", coins=["bitcoin"], rows=3, start=pd.Timestamp("2024-01-01", tz="UTC"),
                       end=pd.Timestamp("2024-01-01 02:00", tz="UTC"),
                       gaps=find_gaps(frame(5).drop(index=[2])), http_status_counts={200: 2}, retries=1,
                       duration_s=0.5, notes=["x"])
    d = json.loads(json.dumps(rec.to_dict()))
    assert d["start"] == "2024-01-01T00:00:00+00:00"
    assert d["gaps"][0]["last_before"] == "2024-01-01T01:00:00+00:00" and d["gaps"][0]["missing"] == 1
    assert d["http_status_counts"] == {"200": 2}
    assert set(d) >= {"source", "coins", "rows", "start", "end", "gaps", "http_status_counts", "retries",
                      "duration_s", "notes"}


def test_synthetic_default_window_ends_at_last_full_hour():
    df, rec = load_prices("synthetic", ["bitcoin", "ethereum"])
    assert rec.rows == len(df) == 2 * 30 * 24
    # the last bar is the last full hour (the clock may tick over an hour between the two calls)
    assert last_full_bar("1h") - pd.Timedelta("2h") <= rec.end <= last_full_bar("1h") - pd.Timedelta("1h")
    assert rec.source == "synthetic" and rec.http_status_counts == {} and rec.gaps == []
    assert "synthetic" in rec.notes[-1]


def test_load_prices_checks_its_arguments():
    with pytest.raises(ConfigError, match="source must be"):
        load_prices("excel")
    with pytest.raises(DataValidationError, match=r"unknown coin\(s\) \['notacoin'\]"):
        load_prices("synthetic", ["notacoin"])
    with pytest.raises(ConfigError, match="days must be positive"):
        load_prices("synthetic", ["bitcoin"], days=0)
    with pytest.raises(ConfigError, match="needs a path"):
        load_prices("csv", ["bitcoin"])
