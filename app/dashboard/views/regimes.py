"""Market regime: regimes as a coloured background on the price chart, the PCA projection of recent bars coloured
by regime, the regime map (centres on the volatility and trend axes), regime descriptions, forecast error and
coverage by regime."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.dashboard import data, ui

st.title("Market regime")

names = ui.coin_names_or_stop()
c1, c2 = st.columns(2)
coin = c1.selectbox("Coin", names)
days = c2.selectbox("Days shown", [7, 30, 90], index=1)
view = ui.fetch("regimes", lambda: data.regimes(coin, days),
                "Train (`cryptosentinel train` fits the regime model) and compute features, then reload.")
if view is None:
    st.stop()
spans = data.frame(view.get("history") or [], times=("start", "end"))
regimes = sorted(view.get("descriptions") or {}) or sorted(spans["regime"].unique() if len(spans) else [])
colour = {r: ui.PALETTE[i % len(ui.PALETTE)] for i, r in enumerate(regimes)}
cur = view.get("current") or {}
m1, m2, m3 = st.columns(3)
m1.metric("Current regime", cur.get("regime", "unknown"))
m2.metric("Since", pd.Timestamp(cur["since"]).strftime("%Y-%m-%d %H:%M UTC") if cur.get("since") else "–")
m3.metric("Bars in this regime", cur.get("bars", "–"))

start = spans["start"].min().isoformat() if len(spans) else None
bars = ui.fetch(f"{coin} prices", lambda: data.prices(coin, start=start, interval="4h" if days > 14 else None))
if bars is None or bars.empty:
    ui.empty(f"prices for {coin}", "Run the feature pipeline, then reload.")
else:
    fig = go.Figure()
    seen: set[str] = set()
    for s in spans.itertuples():
        fig.add_vrect(x0=s.start, x1=s.end + pd.Timedelta(hours=1), fillcolor=colour.get(s.regime, ui.GREY),
                      opacity=0.22, line_width=0, layer="below")
        if s.regime not in seen:  # a legend entry per regime
            seen.add(s.regime)
            fig.add_trace(go.Scatter(x=[s.start], y=[None], mode="markers", name=s.regime,
                                     marker=dict(size=12, symbol="square", color=colour.get(s.regime, ui.GREY))))
    fig.add_trace(go.Scatter(x=bars["ts"], y=bars["close"], name="close", line=dict(color=ui.BLUE, width=2)))
    fig.update_xaxes(type="date")
    ui.chart(ui.figure(fig, f"{coin.title()}: price with its regimes (last {days} days)", "time (UTC)",
                       "price (USD)", height=440), key="rg_price")

# --- the PCA projection: recent rows on their first two principal components, coloured by regime
proj = ui.fetch(f"{coin} PCA projection", lambda: data.regime_pca(coin, days),
                "Compute features and train (`cryptosentinel train`), then reload.")
points = data.frame((proj or {}).get("points") or [], times=("ts",))
if proj is not None and points.empty:
    ui.empty(f"PCA projection for {coin}", "Compute features (`cryptosentinel features`), then reload.")
elif proj is not None:
    ev = (proj.get("explained_variance") or []) + [float("nan")] * 2
    fig = go.Figure()
    for name in sorted(points["regime"].unique(), key=lambda r: regimes.index(r) if r in regimes else len(regimes)):
        part = points[points["regime"] == name]
        fig.add_trace(go.Scatter(x=part["pc1"], y=part["pc2"], mode="markers", name=f"{name} ({len(part)})",
                                   marker=dict(color=colour.get(name, ui.GREY), size=6, opacity=0.7),
                                   customdata=part["ts"].dt.strftime("%Y-%m-%d %H:%M"),
                                   hovertemplate="%{customdata} UTC<br>PC1 %{x:.2f}, PC2 %{y:.2f}<extra></extra>"))
    ui.chart(ui.figure(fig, f"{coin.title()}: the last {days} days on the first two principal components, "
                            f"coloured by regime ({len(points)} of {proj.get('rows', len(points))} bars)",
                       f"PC1 ({ev[0]:.0%} of the standardised variance)",
                       f"PC2 ({ev[1]:.0%} of the standardised variance)", height=440), key="rg_pca")

desc = pd.DataFrame((view.get("descriptions") or {}).values())
left, right = st.columns(2)
with left:
    if desc.empty or not {"vol_score", "trend_score"} <= set(desc):
        ui.empty("regime descriptions", "Train to fit the regime model, then reload.")
    else:
        fig = go.Figure()
        for r in desc.itertuples():
            fig.add_trace(go.Scatter(x=[r.vol_score], y=[r.trend_score], mode="markers+text", name=r.regime,
                                     text=[r.regime], textposition="top center",
                                     marker=dict(size=18 + 40 * float(getattr(r, "share", 0.1)),
                                                 color=colour.get(r.regime, ui.GREY))))
        ui.chart(ui.figure(fig, "Regime map: centres on the volatility and trend axes (size: share of bars)",
                           "volatility score (standardised)", "trend score (standardised)", height=380),
                 key="rg_map")
with right:
    hist = ui.fetch("prediction history", lambda: data.history(coin=coin, limit=1000))
    by = (hist or {}).get("skill", {}).get("regimes") or {}
    rows = data.frame((hist or {}).get("rows") or [])
    if rows.empty or "regime" not in rows or not by:
        ui.empty("forecast errors by regime", "They appear once forecasts made in each regime are validated.")
    else:
        done = rows[rows["validated"].astype(bool)]
        cover = done.groupby("regime")["inside_80"].mean() * 100 if len(done) else pd.Series(dtype=float)
        names_ = sorted(by)
        fig = go.Figure()
        fig.add_trace(go.Bar(x=names_, y=[by[r].get("relative_mae") for r in names_], name="relative MAE",
                             marker_color=[colour.get(r, ui.GREY) for r in names_]))
        fig.add_trace(go.Scatter(x=names_, y=[cover.get(r) for r in names_], name="80% coverage (%)", yaxis="y2",
                                 mode="markers", marker=dict(color=ui.ORANGE, size=12, symbol="diamond")))
        fig.update_layout(yaxis2=dict(title="80% interval coverage (%)", overlaying="y", side="right",
                                      range=[0, 100]))
        ui.chart(ui.figure(fig, "Forecast error (vs random walk) and coverage by regime, all coins", "regime",
                           "relative MAE (1 = random walk)", height=380), key="rg_err")
if not desc.empty:
    ui.table("Regime descriptions (table)", desc)
ui.table("Regime history (table)", spans)
