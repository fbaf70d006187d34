"""Data drift: the latest integrity and drift results, each feature's drift score over time, and where the full
DeepChecks report is."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.dashboard import data, ui

st.title("Data drift")

d = ui.fetch("drift results", data.drift, "Run inference (`cryptosentinel run`): it checks drift after predicting.")
if d is None:
    st.stop()
latest = d.get("latest")
if not latest:
    ui.empty("drift check", "Run inference (`cryptosentinel run`): it checks drift after predicting, then reload.")
else:
    th = latest.get("thresholds") or {}
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Drift detected", "yes" if latest.get("drift_detected") else "no")
    m2.metric("Drifted features", ui.pct(latest.get("drift_share"), 0),
              help=f"share of features over their threshold (limit {ui.pct(th.get('drift_share'), 0)})")
    mv = latest.get("multivariate_score")
    m3.metric("Multivariate (domain AUC)", "–" if mv is None else f"{mv:.2f}",
              help=f"limit {th.get('multivariate_auc', '–')}")
    lab = latest.get("label_drift_score")
    m4.metric("Label drift", "–" if lab is None else f"{lab:.2f}", help=f"limit {th.get('label_score', '–')}")
    cur, ref = latest.get("current") or {}, latest.get("reference") or {}
    st.caption(f"Checked at {latest.get('created_at', '?')}: the current window {cur.get('first', '?')} → "
               f"{cur.get('last', '?')} ({cur.get('rows', '?')} rows) against the reference "
               f"{ref.get('first', '?')} → {ref.get('last', '?')} ({ref.get('rows', '?')} rows).")
    scores = pd.Series(latest.get("feature_scores") or {}, dtype=float).sort_values()
    if len(scores):
        limit = th.get("feature_score")
        fig = go.Figure(go.Bar(x=scores.values, y=scores.index, orientation="h",
                               marker_color=[ui.RED if limit is not None and v >= limit else ui.BLUE
                                             for v in scores.values]))
        if limit is not None:
            fig.add_vline(x=limit, line=dict(color=ui.ORANGE, dash="dash"), annotation_text="threshold")
        ui.chart(ui.figure(fig, "Drift score per feature, latest check (red: over the threshold)",
                           "drift score (0 = same distribution, 1 = disjoint)", "feature",
                           height=max(380, 16 * len(scores))), key="dr_latest")
    if latest.get("html_path"):
        st.markdown(f"Full DeepChecks report (on the API's host): `{latest['html_path']}`")
    ui.table("Drift checks and conditions (table)", pd.DataFrame(latest.get("conditions") or []))

hist = pd.DataFrame(d.get("scores") or [])
if hist.empty or hist["ts"].nunique() < 1:
    ui.empty("drift history", "Each inference run adds a point; run it a few times, then reload.")
else:
    hist["ts"] = pd.to_datetime(hist["ts"], utc=True, format="ISO8601")
    top = hist.groupby("feature")["score"].max().sort_values(ascending=False).head(8).index
    limit = ((latest or {}).get("thresholds") or {}).get("feature_score")
    fig = go.Figure()
    for i, name in enumerate(top):
        part = hist[hist["feature"] == name].sort_values("ts")
        fig.add_trace(go.Scatter(x=part["ts"], y=part["score"], mode="lines+markers", name=str(name),
                                 line=dict(color=ui.PALETTE[i % len(ui.PALETTE)], width=2),
                                 hovertemplate=f"{name}<br>%{{x}}<br>score %{{y:.3f}}<extra></extra>"))
    if limit is not None:
        fig.add_hline(y=limit, line=dict(color=ui.ORANGE, dash="dash"), annotation_text="threshold")
    fig.update_xaxes(type="date")
    ui.chart(ui.figure(fig, f"Drift score per feature over time (the {len(top)} most drifted)", "check time (UTC)",
                       "drift score (0 = same distribution, 1 = disjoint)", height=420), key="dr_hist")
    ui.table("Drift scores over time (table)", hist)

integ = d.get("integrity")
if integ:
    st.subheader("Data integrity")
    failed = integ.get("failed_checks") or integ.get("failed") or {}
    (st.error if failed else st.success)(f"Integrity: {len(failed)} failed check(s)" if failed else
                                         "Integrity: every check passed.")
    with st.expander("Integrity result (JSON)"):
        st.json(integ)
else:
    st.caption("No data-integrity result stored yet: integrity checks run with the feature pipeline.")
