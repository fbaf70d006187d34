"""Explainability: global SHAP importance of the explaining model, the latest forecast's SHAP contributions
(waterfall) with LIME beside them and their agreement, and every model and baseline with the gate's decisions."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.dashboard import data, ui

st.title("Explainability")

names = ui.coin_names_or_stop()
c1, c2 = st.columns(2)
coin = c1.selectbox("Coin", names)
horizon = c2.selectbox("Horizon (hours)", data.served_horizons() or [24])

ex = ui.fetch("explanation", lambda: data.explanation(coin, horizon),
              "Run inference (`cryptosentinel run`) to store a forecast with its SHAP contributions.")
models = ui.fetch("models", data.models, "Train models (`cryptosentinel train`), then reload.") or []

# --- global importance of the model that explains the forecast (stored in its lineage at training)
explained_by = (ex or {}).get("explained_by", "")
imp = (ex or {}).get("importance") or {}
ranked = pd.DataFrame(imp.get("features") or [])
if not ranked.empty and {"feature", "mean_abs_shap"} <= set(ranked):
    ranked = ranked.assign(mean_abs_shap=ranked["mean_abs_shap"].astype(float)).sort_values("mean_abs_shap")
    ranked = ranked.tail(15)
    unit = imp.get("output_label") or "model output units"
    fig = go.Figure(go.Bar(x=ranked["mean_abs_shap"], y=ranked["feature"], orientation="h", marker_color=ui.BLUE,
                           hovertemplate="%{y}: %{x:.3g}<extra></extra>"))
    ui.chart(ui.figure(fig, f"Global SHAP importance of {explained_by} (top {len(ranked)} features)",
                       f"mean |SHAP| ({unit})", "feature", height=420), key="ex_global")
    st.caption(f"Computed at training on {imp.get('rows', '?')} rows ({imp.get('method', 'SHAP')}); "
               "the larger the bar, the more the feature moves this model's forecasts on average.")
elif ex:
    ui.empty("global SHAP importance",
             f"{explained_by or 'The served model'} has no stored global importance (a constant model such as the "
             "random walk, or one trained without explanations); train a model (`cryptosentinel train`) that beats "
             "it, then reload.")

# --- the latest forecast: SHAP waterfall, LIME beside it
if ex:
    left, right = st.columns([3, 2])
    shap = pd.DataFrame(ex.get("shap") or [])
    with left:
        if shap.empty or not shap["contribution"].astype(float).abs().gt(0).any():
            ui.empty("SHAP contributions for this forecast",
                     f"Every stored contribution of {explained_by or 'the champion'} is zero (a constant model, or "
                     "inference ran without SHAP); run `cryptosentinel run` with explanations on.")
            if not shap.empty:
                ui.table("SHAP contributions (table)", shap)
        else:
            shap = shap.reindex(shap["contribution"].abs().sort_values().index)
            fig = go.Figure(go.Waterfall(y=shap["feature"], x=shap["contribution"] * 1e4, orientation="h",
                                         increasing=dict(marker=dict(color=ui.GREEN)),
                                         decreasing=dict(marker=dict(color=ui.RED)),
                                         totals=dict(marker=dict(color=ui.BLUE))))
            ui.chart(ui.figure(fig, f"SHAP contributions to {coin}'s latest {horizon} h forecast ({explained_by})",
                               "contribution (basis points of return)", "feature", height=420), key="ex_shap")
            ui.table("SHAP contributions (table)", shap)
    with right:
        lime = ex.get("lime")
        if not lime:
            ui.empty("LIME check for this forecast", "LIME runs for non-constant champions at inference; it is "
                                                     "skipped while the random walk is served without a challenger "
                                                     "explanation.")
        else:
            top = lime.get("lime_top") or []
            fig = go.Figure(go.Bar(x=list(range(len(top), 0, -1)), y=top, orientation="h",
                                   marker_color=[ui.GREEN if f in (lime.get("shared") or []) else ui.GREY
                                                 for f in top]))
            ui.chart(ui.figure(fig, "LIME's top features (green: also in SHAP's top)", "rank weight (k = top)",
                               "feature", height=420), key="ex_lime")
            a1, a2, a3 = st.columns(3)
            a1.metric("Top-k overlap", ui.pct(lime.get("top_k_overlap"), 0))
            a2.metric("Sign agreement", ui.pct(lime.get("sign_agreement"), 0))
            a3.metric("Spearman", "–" if lime.get("spearman") is None else f"{lime['spearman']:.2f}")

# --- the model comparison with the gate's decisions
if models:
    rows = []
    for m in models:
        met = m.get("metrics") or {}
        if m.get("task") == "volatility":
            skill, metric = met.get("qlike_skill_best_baseline"), "QLIKE skill vs best volatility baseline"
        elif m.get("task") == "classification":
            base = met.get("majority_brier")
            skill = 0.0 if m.get("family") == "majority" else (
                None if not base or met.get("brier") is None else 1 - met["brier"] / base)
            metric = "Brier skill vs majority"
        else:
            rel = met.get("relative_mae")
            skill, metric = (None if rel is None else 1 - rel), "MAE skill vs random walk"
        rows.append({"model": f"{m['name']}@{m['version']}", "task": m.get("task"), "horizon": m.get("horizon"),
                     "status": m.get("status"), "skill": skill, "metric": metric, "gate": m.get("reason")})
    tab = pd.DataFrame(rows)
    shown = tab[tab["horizon"] == horizon] if (tab["horizon"] == horizon).any() else tab
    shown = shown.dropna(subset=["skill"])
    shown = shown.assign(pct=shown["skill"].astype(float) * 100).sort_values("pct")
    colours = {"champion": ui.GREEN, "challenger": ui.BLUE}
    fig = go.Figure()
    for status, part in shown.groupby("status"):
        fig.add_trace(go.Bar(y=part["model"], x=part["pct"], name=str(status), orientation="h",
                             marker_color=colours.get(str(status), ui.GREY), customdata=part["metric"],
                             text=[f"{v:+.1f}%" for v in part["pct"]], textposition="outside",
                             hovertemplate="%{y}<br>%{x:.1f}% (%{customdata})<extra></extra>"))
    fig.add_vline(x=0, line=dict(color=ui.GREY, dash="dash"))
    ui.chart(ui.figure(fig, f"Every model against its baseline, walk-forward ({horizon} h and its volatility)",
                       "skill (% lower loss than the baseline; baselines are 0)", "model@version",
                       height=max(380, 26 * len(shown)), yaxis=dict(categoryorder="array",
                                                                    categoryarray=list(shown["model"]))),
             key="ex_models")
    ui.table("Model comparison and the gate's decisions (table)", tab, expanded=False)
