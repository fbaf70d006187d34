"""CSV snapshot readers: the real snapshots in ../shared/data (read in place) and bad files built here."""

from __future__ import annotations

import pandas as pd
import pytest

from cryptosentinel.config import DataValidationError, SourceError
from cryptosentinel.ingest import TICKER_TO_ID
from cryptosentinel.snapshots import read_csv_snapshot
from cryptosentinel.sources import load_prices

pytestmark = pytest.mark.data

UTC = "UTC"
GAPS = [  # (last candle before, first candle after, missing hours), the same in every hourly file
    ("2021-04-20 01:00", "2021-04-20 04:00", 2),
    ("2021-04-25 04:00", "2021-04-25 08:00", 3),
    ("2021-08-13 01:00", "2021-08-13 06:00", 4),
    ("2021-09-29 06:00", "2021-09-29 09:00", 2),
    ("2023-03-24 12:00", "2023-03-24 14:00", 1),
]


@pytest.fixture(scope="module")
def hourly(shared_data):
    return read_csv_snapshot(shared_data / "hourly_binance_spot")


@pytest.fixture(scope="module")
def daily(shared_data):
    return read_csv_snapshot(shared_data / "daily_coingecko")


# ---------------------------------------------------------------------------------------------- real files
@pytest.mark.shared_data
def test_hourly_rows_and_spans(hourly):
    df = hourly.frame
    assert len(hourly.files) == 8 and set(df["coin"]) == set(TICKER_TO_ID.values())
    spans = df.groupby("coin")["ts"].agg(["size", "min", "max"])
    # 23988 rows per file (ETH 23989), less the partial last candle
    assert spans.loc["ethereum", "size"] == 23988
    assert (spans.drop(index="ethereum")["size"] == 23987).all()
    assert spans.loc["bitcoin", "min"] == pd.Timestamp("2021-04-04 20:00", tz=UTC)
    assert spans.loc["bitcoin", "max"] == pd.Timestamp("2023-12-30 18:00", tz=UTC)  # 19:00 was partial
    assert spans.loc["solana", "min"] == pd.Timestamp("2021-04-04 21:00", tz=UTC)
    assert spans.loc["solana", "max"] == pd.Timestamp("2023-12-30 19:00", tz=UTC)
    assert set(df["source"]) == {"csv"} and set(df["granularity"]) == {"1h"}
    assert df["market_cap"].isna().all()
    assert sum("last candle" in n for n in hourly.notes) == 8


@pytest.mark.shared_data
def test_hourly_gaps_recorded_not_filled(hourly):
    assert len(hourly.gaps) == 5 * 8
    for coin in TICKER_TO_ID.values():
        got = [(g["last_before"], g["first_after"], g["missing"]) for g in hourly.gaps if g["coin"] == coin]
        assert got == [(pd.Timestamp(a, tz=UTC), pd.Timestamp(b, tz=UTC), n) for a, b, n in GAPS]
    ts = hourly.frame.loc[hourly.frame["coin"] == "bitcoin", "ts"]
    assert pd.Timestamp("2021-04-20 02:00", tz=UTC) not in set(ts)  # not filled


@pytest.mark.shared_data
def test_hourly_zero_volume_kept_and_flagged(hourly):
    assert [(z["coin"], z["rows"], z["first"]) for z in hourly.zero_volume] == [
        (coin, 1, pd.Timestamp("2023-03-24 12:00", tz=UTC)) for coin in sorted(TICKER_TO_ID.values())]
    row = hourly.frame[(hourly.frame["coin"] == "bitcoin") & (hourly.frame["volume"] == 0)]
    assert len(row) == 1 and row["open"].iloc[0] == row["close"].iloc[0]
    assert any("zero volume kept" in n for n in hourly.notes)


@pytest.mark.shared_data
def test_hourly_single_file_and_coin_filter(shared_data):
    one = read_csv_snapshot(shared_data / "hourly_binance_spot" / "ETHUSDT_1h.csv")
    assert set(one.frame["coin"]) == {"ethereum"} and len(one.frame) == 23988
    two = read_csv_snapshot(shared_data / "hourly_binance_spot", coins=["bitcoin", "solana"])
    assert set(two.frame["coin"]) == {"bitcoin", "solana"} and len(two.frame) == 2 * 23987
    assert {g["coin"] for g in two.gaps} == {"bitcoin", "solana"}


@pytest.mark.shared_data
def test_daily_rows_bnb_and_off_midnight(daily):
    df = daily.frame
    sizes = df.groupby("coin").size()
    assert sizes["bitcoin"] == 3867 and sizes["dogecoin"] == 3941 and sizes["solana"] == 1329
    bnb = df[df["coin"] == "binancecoin"]
    assert len(bnb) == 2265 - 42 and bnb["ts"].min() == pd.Timestamp("2017-10-30", tz=UTC)
    assert any("dropped 42 binancecoin row(s) before 2017-10-30" in n for n in daily.notes)
    assert (df["ts"] == df["ts"].dt.normalize()).all()  # every snapshot on its date
    btc = df[df["coin"] == "bitcoin"].set_index("ts")
    for day in ["2017-06-06", "2017-06-08", "2018-01-30", "2018-02-08"]:
        assert pd.Timestamp(day, tz=UTC) in btc.index
    assert btc.loc[pd.Timestamp("2018-01-30", tz=UTC), "close"] == pytest.approx(11095.2106891266)
    assert any("btc-usd-max.csv: 4 snapshot(s) off midnight" in n for n in daily.notes)
    assert df.loc[df["coin"] == "dogecoin", "ts"].max() == pd.Timestamp("2024-10-01", tz=UTC)
    assert set(df["granularity"]) == {"1d"} and (df["open"] == df["close"]).all()


@pytest.mark.shared_data
def test_daily_market_cap_and_zero_volume(daily):
    df = daily.frame
    btc = df[df["coin"] == "bitcoin"].set_index("ts")
    assert pd.isna(btc.loc[pd.Timestamp("2017-04-02", tz=UTC), "market_cap"])  # blank in the file
    assert (df["market_cap"].dropna() > 0).all()
    zero = {z["coin"]: z for z in daily.zero_volume}
    assert zero["bitcoin"]["rows"] == 242 and zero["bitcoin"]["last"] == pd.Timestamp("2013-12-26", tz=UTC)
    assert zero["ripple"]["rows"] == 140 and zero["dogecoin"]["rows"] == 11


@pytest.mark.shared_data
def test_daily_missing_dates_are_gaps(daily):
    btc = [(g["last_before"].date().isoformat(), g["missing"]) for g in daily.gaps if g["coin"] == "bitcoin"]
    assert btc == [("2013-06-03", 1), ("2015-01-27", 1)]
    assert [g for g in daily.gaps if g["coin"] == "binancecoin"] == []  # its gaps were before 2017-10-30
    assert len([g for g in daily.gaps if g["coin"] == "ripple"]) == 5


@pytest.mark.shared_data
def test_load_prices_csv_clips_window(shared_data):
    df, rec = load_prices("csv", ["bitcoin"], start="2023-03-24", end="2023-03-25",
                          path=shared_data / "hourly_binance_spot")
    assert rec.source == "csv" and rec.rows == 23  # 24 hours less the 13:00 gap
    assert rec.gaps[0]["missing"] == 1
    assert any("clipped" in n for n in rec.notes)
    df, rec = load_prices("csv", ["ethereum"], days=2, path=shared_data / "hourly_binance_spot")
    assert rec.end == pd.Timestamp("2023-12-30 19:00", tz=UTC) and rec.rows == 48


# ---------------------------------------------------------------------------------------------- bad files
HEADER = "date,open,high,low,close,volume,ticker"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def kline(hour: int, close="100.5", low="99", volume="1", ticker="BTCUSDT", day="2024-01-01") -> str:
    return f"{day} {hour:02d}:00:00,100,101,{low},{close},{volume},{ticker}"


def binance(tmp_path, *lines, name="BTCUSDT_1h.csv"):
    return write(tmp_path, name, "\n".join([HEADER, *lines]) + "\n")


def failure(path, **kw) -> str:
    with pytest.raises(DataValidationError) as err:
        read_csv_snapshot(path, **kw)
    return str(err.value)


def test_empty_file(tmp_path):
    assert "x.csv: the file is empty" in failure(write(tmp_path, "x.csv", ""))
    assert "header but no rows" in failure(write(tmp_path, "y.csv", HEADER + "\n"))


def test_wrong_columns(tmp_path):
    msg = failure(write(tmp_path, "x.csv", "time,price\n2024-01-01,1\n"))
    assert "unrecognised CSV columns ['time', 'price']" in msg and "Binance" in msg and "snapped_at" in msg


def test_text_in_numeric_column(tmp_path):
    msg = failure(binance(tmp_path, kline(0), kline(1, close="abc"), kline(2), kline(3, volume="?")))
    assert "column 'close' has 1 non-numeric value(s), e.g. line 3: 'abc'" in msg
    assert "column 'volume'" in msg and "line 5: '?'" in msg


def test_negative_prices(tmp_path):
    msg = failure(binance(tmp_path, kline(0), kline(1, low="-5"), kline(2), kline(3)))
    assert "column 'low': must be > 0: 1 row(s)" in msg and "bitcoin 2024-01-01T01:00:00+00:00" in msg


def test_duplicate_timestamps(tmp_path):
    msg = failure(binance(tmp_path, kline(0), kline(1), kline(1), kline(2)))
    assert "duplicate (coin, ts)" in msg and "2024-01-01T01:00:00+00:00" in msg


def test_unknown_ticker(tmp_path):
    msg = failure(binance(tmp_path, kline(0, ticker="PEPEUSDT"), kline(1, ticker="PEPEUSDT")))
    assert "unknown ticker(s) ['PEPEUSDT']" in msg and "BTCUSDT" in msg


def test_unknown_coin_requested(tmp_path):
    path = binance(tmp_path, kline(0), kline(1), kline(2))
    assert "no rows for ['ethereum']" in failure(path, coins=["ethereum"])


def test_bad_times(tmp_path):
    msg = failure(binance(tmp_path, kline(0), "2024-13-01 01:00:00,100,101,99,100,1,BTCUSDT", kline(2)))
    assert "column 'date'" in msg and "line 3" in msg


def test_naive_daily_timestamps(tmp_path):
    path = write(tmp_path, "btc-usd-max.csv", "snapped_at,price,market_cap,total_volume\n"
                 "2020-01-01 00:00:00 UTC,7200,1.3e11,2e10\n2020-01-02 00:00:00,7000,1.3e11,2e10\n")
    msg = failure(path)
    assert "naive timestamp(s)" in msg and "line 3" in msg


def test_daily_unknown_symbol(tmp_path):
    path = write(tmp_path, "pepe-usd-max.csv", "snapped_at,price,market_cap,total_volume\n"
                 "2020-01-01 00:00:00 UTC,1,1,1\n")
    assert "cannot tell the coin from the file name" in failure(path)


def test_daily_quirks_on_small_file(tmp_path):
    path = write(tmp_path, "bnb-usd-max.csv", "snapped_at,price,market_cap,total_volume\n"
                 "2017-10-28 00:00:00 UTC,0.05,5e6,3\n2017-10-29 00:00:00 UTC,0.05,5e6,3\n"
                 "2017-10-30 00:04:00 UTC,1.3,0,0\n2017-11-01 00:00:00 UTC,1.5,,10\n")
    load = read_csv_snapshot(path)
    df = load.frame
    assert df["ts"].tolist() == [pd.Timestamp("2017-10-30", tz=UTC), pd.Timestamp("2017-11-01", tz=UTC)]
    assert df["market_cap"].isna().all() and df["volume"].tolist() == [0.0, 10.0]
    assert load.gaps[0]["missing"] == 1 and load.zero_volume[0]["rows"] == 1
    assert any("dropped 2 binancecoin row(s)" in n for n in load.notes)


def test_missing_and_empty_paths(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        read_csv_snapshot(tmp_path / "nope.csv")
    with pytest.raises(SourceError, match="no \\*.csv files"):
        read_csv_snapshot(tmp_path)


def test_mixed_granularities_in_one_folder(tmp_path):
    binance(tmp_path, kline(0), kline(1), kline(2))
    write(tmp_path, "eth-usd-max.csv", "snapped_at,price,market_cap,total_volume\n2020-01-01 00:00:00 UTC,1,1,1\n")
    assert "mixes granularities" in failure(tmp_path)


def test_partial_last_candle_dropped_per_coin(tmp_path):
    binance(tmp_path, kline(0), kline(1), kline(2, volume="0.01"))
    binance(tmp_path, kline(0, ticker="ETHUSDT"), kline(1, ticker="ETHUSDT"), name="ETHUSDT_1h.csv")
    load = read_csv_snapshot(tmp_path)
    assert load.frame.groupby("coin")["ts"].max().to_dict() == {
        "bitcoin": pd.Timestamp("2024-01-01 01:00", tz=UTC), "ethereum": pd.Timestamp("2024-01-01 00:00", tz=UTC)}


def test_load_prices_csv_defaults_to_the_coins_in_the_file(tmp_path):
    path = binance(tmp_path, kline(0), kline(1), kline(2))
    df, rec = load_prices("csv", path=path)
    assert rec.coins == ["bitcoin"] and rec.rows == 2 and rec.granularity == "1h"
    assert any("last candle" in n for n in rec.notes)
