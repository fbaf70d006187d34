"""Forecasts: recent prices with the forecast and its 80% and 95% bands drawn ahead, the volatility forecast
beside the realised move, and the champions' versions with their skill against their baselines."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.dashboard import data, ui

st.title("Forecasts")

names = ui.coin_names_or_stop()
horizons = data.served_horizons()
c1, c2, c3 = st.columns(3)
coin = c1.selectbox("Coin", names)
horizon = c2.selectbox("Horizon (hours)", horizons or [24])
days = c3.selectbox("History shown (days)", [7, 30, 90], index=1)

fc = ui.fetch("forecast", lambda: data.forecasts((coin,), horizon),
              "Train champions for this horizon (`cryptosentinel train`), then reload.")
f = fc[0] if fc else None
end = pd.Timestamp(f["made_at"]) if f else None
coins = {c["coin"]: c for c in (ui.fetch("coins", data.coins) or [])}
last_bar = pd.Timestamp(coins[coin]["last_bar"]) if coins.get(coin, {}).get("last_bar") else end
bars = None
if last_bar is not None:
    start = (last_bar - pd.Timedelta(days=days)).isoformat()
    bars = ui.fetch(f"{coin} prices", lambda: data.prices(coin, start=start, interval="4h" if days > 14 else None))
if bars is None or bars.empty:
    ui.empty(f"prices for {coin}", "Run the feature pipeline (`cryptosentinel run`), then reload.")
else:
    fig = go.Figure(go.Candlestick(x=bars["ts"], open=bars["open"], high=bars["high"], low=bars["low"],
                                   close=bars["close"], name="price", increasing_line_color=ui.GREEN,
                                   decreasing_line_color=ui.RED))
    if f:
        t0, t1 = pd.Timestamp(f["made_at"]), pd.Timestamp(f["made_at"]) + pd.Timedelta(hours=f["horizon"])
        for level, alpha in ((95, 0.18), (80, 0.35)):
            fig.add_trace(go.Scatter(x=[t0, t1, t1, t0], y=[f["price"], f[f"price_hi_{level}"],
                                                             f[f"price_lo_{level}"], f["price"]],
                                     fill="toself", mode="lines", line=dict(width=0), name=f"{level}% band",
                                     fillcolor=ui.band(ui.BLUE, alpha)))
        fig.add_trace(go.Scatter(x=[t0, t1], y=[f["price"], f["pred_price"]], mode="lines+markers", name="forecast",
                                 line=dict(color=ui.ORANGE, width=3, dash="dot")))
    fig.update_layout(xaxis_rangeslider_visible=False)
    ui.chart(ui.figure(fig, f"{coin.title()}: the last {days} days and the {horizon} h forecast",
                       "time (UTC)", "price (USD)", height=460), key="fc_price")
    if f:
        st.caption(f"Forecast made at {t0:%Y-%m-%d %H:%M} UTC by **{f['model']}**; intervals: "
                   f"{f.get('interval_method') or 'n/a'}; direction: **{f['direction']}**.")

# --- volatility forecast beside the realised move
hist = ui.fetch("prediction history", lambda: data.history(horizon=horizon, coin=coin, limit=1000))
if hist is not None:
    h = data.frame(hist["rows"], times=("made_at",))
    if h.empty or "vol_forecast" not in h:
        ui.empty("volatility forecasts", "Run inference a few times (`cryptosentinel run`), then reload.")
    else:
        h = h.sort_values("made_at")
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=h["made_at"], y=h["vol_forecast"] * 100, name="volatility forecast (sd)",
                                 mode="lines+markers", line=dict(color=ui.PURPLE, width=2),
                                 marker=dict(size=9, color=ui.PURPLE)))
        if "actual_return" in h and h["actual_return"].notna().any():
            fig.add_trace(go.Scatter(x=h["made_at"], y=h["actual_return"].abs() * 100, mode="markers",
                                     name="realised |return|", marker=dict(color=ui.GREY, size=4)))
        ui.chart(ui.figure(fig, f"{coin.title()}: {horizon} h volatility forecast and the realised move",
                           "forecast made at (UTC)", "horizon log return (%)"), key="fc_vol")

# --- champions and their skill against the baselines
champ = ui.fetch("champion models", data.champion, "Train champions (`cryptosentinel train`), then reload.")
if champ:
    rows = []
    for key, m in (champ.get("models") or {}).items():
        if m.get("name") is None:
            continue
        met = m.get("metrics") or {}
        if m.get("task") == "volatility":
            skill, vs = met.get("qlike_skill_best_baseline"), "best volatility baseline (QLIKE)"
        else:
            rel = met.get("relative_mae")
            skill, vs = (None if rel is None else 1 - rel), "random walk (MAE)"
        rows.append({"champion": key, "role": "champion", "model": f"{m['name']}@{m['version']}",
                     "task": m.get("task"), "skill": skill, "against": vs, "since": m.get("champion_since"),
                     "note": m.get("note")})
        best = m.get("best_challenger") or {}
        if best.get("name") and (best.get("metrics") or {}).get("relative_mae") is not None:
            rows.append({"champion": key, "role": "best challenger", "model": f"{best['name']}@{best['version']}",
                         "task": best.get("task"), "skill": 1 - best["metrics"]["relative_mae"], "against": vs,
                         "since": None, "note": best.get("reason")})
    for key, m in (champ.get("classifiers") or {}).items():
        met = m.get("metrics") or {}
        base = met.get("majority_brier")
        skill = None if not base or met.get("brier") is None else 1 - met["brier"] / base
        rows.append({"champion": f"direction-{key}", "role": "champion", "model": f"{m['name']}@{m['version']}", "task": m.get("task"),
                     "skill": 0.0 if m.get("family") == "majority" else skill, "against": "majority (Brier)",
                     "since": m.get("champion_since"), "note": m.get("note")})
    if rows:
        ch = pd.DataFrame(rows)
        fig = go.Figure()
        for role, colour in (("champion", ui.BLUE), ("best challenger", ui.ORANGE)):
            part = ch[ch["role"] == role]
            y = part["skill"].astype(float) * 100
            fig.add_trace(go.Bar(x=part["champion"], y=y, name=role, marker_color=colour,
                                 text=[f"{v:+.1f}%" for v in y], textposition="outside", cliponaxis=False,
                                 customdata=part[["model", "against"]].to_numpy(),
                                 hovertemplate="%{customdata[0]}: %{y:+.1f}%<br>vs %{customdata[1]}<extra></extra>"))
        fig.add_hline(y=0, line=dict(color=ui.GREY, dash="dash"), annotation_text="baseline")
        ui.chart(ui.figure(fig, "Walk-forward skill against the baseline: champions and their best challengers",
                           "champion slot (horizon, task)", "skill (% lower loss than the baseline)", height=380,
                           barmode="group"), key="fc_skill")
        if (ch.loc[ch["role"] == "champion", "skill"].fillna(0) == 0).all():
            st.caption("Every champion is its baseline (skill 0): no model beat it by a significant margin, so the "
                       "baseline is served, as the gate requires.")
        ui.table("Champions (table)", ch)
    else:
        ui.empty("champions", "Train models (`cryptosentinel train`), then reload.")
