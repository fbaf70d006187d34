"""Pipeline: runs per flow with their state and duration, the executed notebooks they left, the time since each
flow last succeeded, and (with the admin key configured) buttons to start a run or reload the champions."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.dashboard import data, ui
from cryptosentinel.queries import FLOWS  # the flows POST /admin/runs/{flow} starts

st.title("Pipeline")

STATE_COLOURS = {"Completed": ui.GREEN, "Failed": ui.RED, "Crashed": ui.RED, "Running": ui.BLUE,
                 "recorded": ui.GREY}

runs = ui.fetch("pipeline runs", lambda: data.runs(limit=200), "Run the pipeline (`cryptosentinel run`).")
if runs is not None and not runs:
    ui.empty("pipeline runs", "Run the pipeline (`cryptosentinel run` or `make run`), then reload.")
elif runs:
    df = pd.DataFrame([{"id": r["id"], "kind": r["kind"], "created_at": r["created_at"],
                        "flow": r["record"].get("flow") or r["kind"], "state": r["record"].get("state", "recorded"),
                        "duration_s": r["record"].get("duration_s"),
                        "notebooks": ", ".join(r["record"].get("notebooks") or [])} for r in runs])
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True, format="ISO8601")
    fig = go.Figure()
    for state, part in df.groupby("state"):
        fig.add_trace(go.Scatter(x=part["created_at"], y=part["flow"], mode="markers", name=str(state),
                                 marker=dict(color=STATE_COLOURS.get(str(state), ui.PURPLE),
                                             size=(part["duration_s"].fillna(1).astype(float) ** 0.5 * 3 + 8)
                                             .clip(upper=40)),
                                 customdata=part["duration_s"], hovertemplate="%{y}<br>%{x}<br>%{customdata} s"))
    ui.chart(ui.figure(fig, "Runs by flow and step (size: duration)", "recorded at (UTC)", "flow or step",
                       height=380), key="pl_runs")
    timed = df.dropna(subset=["duration_s"])
    if len(timed):
        stats = timed.groupby("flow")["duration_s"].agg(["last", "median", "max", "count"]).sort_values("median")
        fig = go.Figure()
        fig.add_trace(go.Bar(y=stats.index, x=stats["median"], orientation="h", name="median",
                             marker_color=ui.band(ui.BLUE, 0.6), text=[f"{v:.1f} s" for v in stats["median"]],
                             textposition="outside"))
        fig.add_trace(go.Scatter(y=stats.index, x=stats["max"], mode="markers", name="slowest",
                                 marker=dict(color=ui.ORANGE, size=11, symbol="diamond")))
        ui.chart(ui.figure(fig, "Duration per flow or step (median bar, slowest marker)", "duration (s)",
                           "flow or step", height=320), key="pl_dur")
    now = pd.Timestamp.now(tz="UTC")
    last_ok = (df[df["state"].isin(["Completed", "recorded"])].groupby("flow")["created_at"].max())
    st.subheader("Since the last success")
    cols = st.columns(min(len(last_ok), 4) or 1)
    for i, (flow, at) in enumerate(last_ok.items()):
        cols[i % len(cols)].metric(str(flow), ui.age_text((now - at).total_seconds()),
                                   help=f"last success recorded at {at:%Y-%m-%d %H:%M} UTC")
    flows = df[df["kind"] == "flow_run"]
    if flows.empty:
        st.caption("No scheduled flow run recorded yet (the steps above ran from the command line); schedule gaps "
                   "are judged once Prefect flows run.")
    ui.table("Runs (table)", df)
    notebooks = [(r["id"], t) for r in runs for t in (r["record"].get("tasks") or []) if t.get("path")]
    with st.expander("Executed notebooks"):
        if not notebooks:
            st.write("No executed notebook recorded yet: flow runs leave one per step under `reports/runs/`.")
        for run_id, t in notebooks:
            st.markdown(f"- run {run_id} · **{t.get('task')}** ({t.get('state')}): `{t.get('html_path') or t['path']}`")

# --- schedule gaps: per flow, the time since its last success against twice its schedule's interval
flows = ui.fetch("flow status", data.flows, "Run the pipeline (`cryptosentinel run`).")
if flows:
    st.subheader("Schedule gaps")
    fs = pd.DataFrame([{"flow": name, **f} for name, f in flows.items()])
    scheduled = fs[fs["interval_s"].notna()].copy()
    gaps = [r.flow for r in scheduled.itertuples() if r.schedule_gap]
    if gaps:
        st.warning(f"Schedule gap in {', '.join(gaps)}: no successful run within twice the schedule's interval. "
                   "Check the Prefect deployments (`cryptosentinel schedule`) or start a run.", icon=":material/warning:")
    elif len(scheduled):
        st.success("Every scheduled flow succeeded within twice its interval.", icon=":material/check_circle:")
    if len(scheduled):
        scheduled["limit_h"] = scheduled["interval_s"].astype(float) * 2 / 3600
        never = scheduled["last_success_age_s"].isna()
        scheduled["age_h"] = scheduled["last_success_age_s"].astype(float) / 3600
        shown_h = scheduled["age_h"].where(~never, scheduled["limit_h"] * 1.5)  # never succeeded: past the limit
        fig = go.Figure()
        fig.add_trace(go.Bar(y=scheduled["flow"], x=shown_h, orientation="h", name="since the last success",
                             marker_color=[ui.RED if g else ui.GREEN for g in scheduled["schedule_gap"]],
                             text=["never succeeded" if n else ui.age_text(a * 3600)
                                   for n, a in zip(never, scheduled["age_h"], strict=True)],
                             textposition="auto"))
        fig.add_trace(go.Scatter(y=scheduled["flow"], x=scheduled["limit_h"], mode="markers",
                                 name="gap limit (2 x interval)",
                                 marker=dict(color=ui.ORANGE, size=14, symbol="line-ns-open", line=dict(width=3))))
        ui.chart(ui.figure(fig, "Time since each scheduled flow last succeeded (red: a schedule gap)",
                           "hours since the last success", "flow", height=300), key="pl_gaps")
    ui.table("Flow status (table)", fs, expanded=False)

st.subheader("Admin")
if not data.admin_key():
    st.caption("Admin actions are hidden: set CRYPTOSENTINEL_API__ADMIN_API_KEY (the API's admin key) for the "
               "dashboard to show them.")
else:
    a1, a2 = st.columns(2)
    flow = a1.selectbox("Flow", FLOWS)
    if a1.button("Start a run", icon=":material/play_arrow:"):
        try:
            job = data.start_run(flow)
            st.success(f"{job['flow']} submitted as job {job['id']} ({job['state']}).")
        except data.ApiError as err:
            st.error(f"The run was not started: {err.message}")
    if a2.button("Reload the champions", icon=":material/sync:"):
        try:
            out = data.reload_champions()
            st.success("New champions loaded." if out.get("changed") else "The served champions are current.")
        except data.ApiError as err:
            st.error(f"The champions were not reloaded: {err.message}")
