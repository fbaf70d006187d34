"""Prediction history: forecasts against what happened, right / wrong / flat / no call, rolling interval coverage
against the nominal level and rolling skill against the random walk; filters by coin, horizon and model version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.dashboard import data, ui

st.title("Prediction history")

names = ui.coin_names_or_stop()
c1, c2, c3, c4 = st.columns(4)
coin = c1.selectbox("Coin", names)
horizon = c2.selectbox("Horizon (hours)", data.served_horizons() or [24])
page = ui.fetch("prediction history", lambda: data.history(horizon=horizon, coin=coin, limit=1000),
                "Run inference (`cryptosentinel run`), then reload.")
if page is None:
    st.stop()
h = data.frame(page["rows"], times=("made_at",))
if h.empty:
    ui.empty(f"{horizon} h forecasts for {coin}", "Run inference (`cryptosentinel run`) and wait one horizon for "
                                                  "them to be validated.")
    st.stop()
versions = ["all"] + sorted(h["model"].dropna().unique())
model = c3.selectbox("Model version", versions)
window = c4.selectbox("Rolling window (forecasts)", [24, 72, 168], index=1)
if model != "all":
    h = h[h["model"] == model]
h = h.sort_values("made_at")
h["target_at"] = h["made_at"] + pd.to_timedelta(h["horizon"], unit="h")
st.caption(f"The newest {len(h)} of {page['total']} stored {horizon} h forecasts for {coin}"
           + (f" by {model}" if model != "all" else "") + ".")
done = h[h["validated"].astype(bool)] if "validated" in h else h.iloc[0:0]

# --- forecast against the outcome
fig = go.Figure()
ends = {lvl: (h["price"] * np.exp(h[f"lo_{lvl}"]), h["price"] * np.exp(h[f"hi_{lvl}"])) for lvl in (80, 95)}
for lvl, alpha in ((95, 0.15), (80, 0.3)):
    lo, hi = ends[lvl]
    fig.add_trace(go.Scatter(x=h["target_at"], y=hi, line=dict(width=0), showlegend=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=h["target_at"], y=lo, line=dict(width=0), fill="tonexty",
                             fillcolor=ui.band(ui.BLUE, alpha), name=f"{lvl}% interval"))
fig.add_trace(go.Scatter(x=h["target_at"], y=h["pred_price"], name="forecast", line=dict(color=ui.ORANGE, width=2)))
if "actual_price" in h and h["actual_price"].notna().any():
    fig.add_trace(go.Scatter(x=h["target_at"], y=h["actual_price"], name="actual",
                             line=dict(color=ui.GREEN, width=2)))
ui.chart(ui.figure(fig, f"{coin.title()}: {horizon} h forecasts against what happened", "target time (UTC)",
                   "price (USD)", height=420), key="hi_fc")

left, right = st.columns(2)
outcomes = h["direction_outcome"].replace("", "pending").fillna("pending") if "direction_outcome" in h else None
with left:
    if outcomes is not None:
        counts = outcomes.value_counts()
        colours = {"right": ui.GREEN, "wrong": ui.RED, "flat": ui.GREY, "no call": ui.BLUE, "pending": ui.PURPLE}
        fig = go.Figure(go.Bar(x=counts.index, y=counts.values,
                               marker_color=[colours.get(k, ui.TEAL) for k in counts.index]))
        ui.chart(ui.figure(fig, "Direction calls scored", "outcome", "forecasts (count)", height=340), key="hi_out")
with right:
    if done.empty:
        ui.empty("validated forecasts", f"Each forecast is validated {horizon} h after it was made.")
    else:
        cov = go.Figure()
        for lvl, colour in ((80, ui.BLUE), (95, ui.PURPLE)):
            inside = done[f"inside_{lvl}"].astype(float)
            cov.add_trace(go.Scatter(x=done["made_at"], y=inside.rolling(window, min_periods=5).mean() * 100,
                                     name=f"{lvl}% interval", line=dict(color=colour)))
            cov.add_hline(y=lvl, line=dict(color=colour, dash="dash"), annotation_text=f"nominal {lvl}%")
        ui.chart(ui.figure(cov, f"Rolling interval coverage ({window} forecasts)", "forecast made at (UTC)",
                           "coverage (%)", height=340), key="hi_cov")

if not done.empty:
    err = done["abs_error"].astype(float).rolling(window, min_periods=5).mean()
    rw = done["rw_abs_error"].astype(float).rolling(window, min_periods=5).mean()
    fig = go.Figure(go.Scatter(x=done["made_at"], y=(1 - err / rw) * 100, name="skill",
                               line=dict(color=ui.TEAL, width=2)))
    fig.add_hline(y=0, line=dict(color=ui.GREY, dash="dash"), annotation_text="random walk")
    ui.chart(ui.figure(fig, f"Rolling skill against the random walk ({window} forecasts)", "forecast made at (UTC)",
                       "skill (% lower mean absolute error)", height=340), key="hi_skill")
    skill = (page.get("skill") or {}).get("rolling") or {}
    if skill:
        s1, s2, s3 = st.columns(3)
        s1.metric("Relative MAE (all coins)", f"{skill.get('relative_mae', float('nan')):.3f}",
                  help="mean absolute error over the random walk's: below 1 beats it")
        s2.metric("80% coverage", ui.pct(skill.get("coverage_80")))
        s3.metric("95% coverage", ui.pct(skill.get("coverage_95")))
ui.table("Forecasts (table)", h.drop(columns=["top_features"], errors="ignore"))
