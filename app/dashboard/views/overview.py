"""Overview: every coin's price and 24 h change, the latest forecast with its interval, volatility against its
recent range, large-move chances, direction or no call, regime, open alerts, freshness badges."""

from __future__ import annotations

from functools import partial

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.dashboard import data, ui

st.title("Overview")

coins = ui.fetch("coins", data.coins)
if coins is None:
    st.stop()
with_data = [c for c in coins if c.get("price") is not None]
if not with_data:
    ui.empty("prices", "Run the pipeline (`cryptosentinel run` or `make run`) to ingest prices, then reload.")
    st.stop()

# --- freshness badges
forecasts = ui.fetch("forecasts", lambda: data.forecasts(tuple(c["coin"] for c in with_data)),
                     "Train and publish champions (`cryptosentinel train`), then reload.") or []
champ = ui.fetch("champion models", data.champion) or {}
runs = ui.fetch("pipeline runs", lambda: data.runs(limit=20)) or []
newest = max(pd.Timestamp(c["last_bar"]) for c in with_data)
live = any(c.get("source") == "coingecko" for c in with_data)
b1, b2, b3 = st.columns(3)
if live:
    age = min(c["age_s"] for c in with_data if c.get("age_s") is not None)
    b1.metric("Data age", ui.age_text(age), help="since the newest bar, against the clock (live data)",
              delta="stale" if any(c.get("stale") for c in with_data) else "fresh", delta_color="inverse"
              if any(c.get("stale") for c in with_data) else "normal")
else:
    b1.metric("Data as of", newest.strftime("%Y-%m-%d %H:%M UTC"),
              help="snapshot or simulated data: judged as of its last bar, not against the clock")
price_champs = [m for k, m in (champ.get("models") or {}).items() if k[:1].isdigit() and m.get("age_s") is not None]
b2.metric("Model age", ui.age_text(min(m["age_s"] for m in price_champs)) if price_champs else "no champion",
          help="since the newest price champion was published")
if runs:
    last = runs[0]
    b3.metric("Last pipeline run", pd.Timestamp(last["created_at"]).strftime("%Y-%m-%d %H:%M UTC"),
              help=f"{last['kind']} ({last['record'].get('state', 'recorded')})")
else:
    b3.metric("Last pipeline run", "none recorded")

# --- prices and 24 h change
cols = st.columns(min(len(with_data), 4))
for i, c in enumerate(with_data):
    start = (pd.Timestamp(c["last_bar"]) - pd.Timedelta(hours=24)).isoformat()
    bars = ui.fetch(f"{c['coin']} prices", partial(data.prices, c["coin"], start=start))
    change = None
    if bars is not None and len(bars) > 1:
        change = bars["close"].iloc[-1] / bars["close"].iloc[0] - 1
    cols[i % len(cols)].metric(c["coin"].title(), f"${c['price']:,.2f}",
                               delta=None if change is None else f"{100 * change:+.2f}% 24 h")

# --- latest forecasts
if not forecasts:
    ui.empty("forecasts", "Train champions and run inference (`cryptosentinel run`), then reload.")
else:
    fc = pd.DataFrame(forecasts)
    fc["label"] = fc["coin"] + " · " + fc["horizon"].astype(str) + " h"
    to_pct = 100.0
    left, right = st.columns(2)
    fig = go.Figure()
    for level, colour, width in ((95, ui.BLUE, 0.35), (80, ui.BLUE, 0.7)):
        lo = (fc[f"price_lo_{level}"] / fc["price"] - 1) * to_pct
        hi = (fc[f"price_hi_{level}"] / fc["price"] - 1) * to_pct
        fig.add_trace(go.Bar(y=fc["label"], x=hi - lo, base=lo, orientation="h", name=f"{level}% interval",
                             marker_color=ui.band(colour, width)))
    fig.add_trace(go.Scatter(y=fc["label"], x=(fc["pred_price"] / fc["price"] - 1) * to_pct, mode="markers",
                             name="forecast", marker=dict(color=ui.ORANGE, size=11, symbol="diamond")))
    fig.update_layout(barmode="overlay")
    left_fig = ui.figure(fig, "Forecast change with its 80% and 95% intervals", "change from the last close (%)",
                         "coin · horizon")
    with left:
        ui.chart(left_fig, key="ov_fc")
    moves = go.Figure()
    for col, colour, name in (("p_move_5", ui.ORANGE, "P(|move| > 5%)"), ("p_move_10", ui.RED, "P(|move| > 10%)")):
        if col in fc:
            moves.add_trace(go.Bar(x=fc["label"], y=fc[col] * 100, name=name, marker_color=colour))
    with right:
        ui.chart(ui.figure(moves, "Chance of a large move within the horizon", "coin · horizon", "probability (%)",
                           barmode="group"), key="ov_moves")

    # volatility forecast against its recent range (the stored forecasts of the last 30 days)
    hist = ui.fetch("prediction history", lambda: data.history(limit=1000))
    vol = go.Figure()
    if hist and hist.get("rows"):
        h = data.frame(hist["rows"], times=("made_at",))
        recent = h[h["made_at"] >= h["made_at"].max() - pd.Timedelta(days=30)].dropna(subset=["vol_forecast"])
        rng = recent.groupby("coin")["vol_forecast"].agg(["min", "max", "count"])
        if (rng["count"] < 2).all():
            st.caption("The 30-day range of the volatility forecast appears after a few inference runs "
                       f"({int(rng['count'].sum())} volatility forecast(s) stored so far).")
        rng = rng[["min", "max"]] * 100
        vol.add_trace(go.Bar(x=rng.index, y=rng["max"] - rng["min"], base=rng["min"], name="30-day range",
                             marker_color=ui.band(ui.GREY, 0.45)))
    now_vol = fc[fc["horizon"] == (hist or {}).get("horizon", fc["horizon"].iloc[0])]
    vol.add_trace(go.Scatter(x=now_vol["coin"], y=now_vol["vol_forecast"] * 100, mode="markers", name="now",
                             marker=dict(color=ui.PURPLE, size=13, symbol="line-ew-open", line=dict(width=4))))
    ui.chart(ui.figure(vol, "Volatility forecast against its range over the last 30 days", "coin",
                       "forecast sd of the horizon log return (%)"), key="ov_vol")

    table = fc[["coin", "horizon", "price", "pred_price", "price_lo_80", "price_hi_80", "price_lo_95", "price_hi_95",
                "vol_forecast", "p_move_5", "p_move_10", "direction", "p_up", "p_up_base_rate", "regime", "model",
                "made_at"]]
    calls = ", ".join(f"{r.coin} {r.horizon} h: **{r.direction}**"
                      + (f" (p up {r.p_up:.0%})" if pd.notna(r.p_up) else
                         f" (base rate up {r.p_up_base_rate:.0%})" if pd.notna(r.p_up_base_rate) else "")
                      + f", regime *{r.regime or 'unknown'}*" for r in fc.itertuples())
    st.markdown(f"Direction and regime: {calls}")
    ui.table("Latest forecasts (table)", table)

# --- alerts
alerts = ui.fetch("alerts", data.alerts)
if alerts is not None:
    if not alerts:
        st.success("No alerts in the last 30 days.", icon=":material/check_circle:")
    else:
        al = pd.DataFrame(alerts)
        counts = al.groupby("severity").size().reindex(["critical", "warning", "info"]).fillna(0)
        fig = go.Figure(go.Bar(x=counts.index, y=counts.values,
                               marker_color=[ui.SEVERITY_COLOURS[s] for s in counts.index]))
        ui.chart(ui.figure(fig, "Alerts of the last 30 days by severity", "severity", "alerts (count)", height=300),
                 key="ov_alerts")
        ui.table("Alerts (table)", al)
