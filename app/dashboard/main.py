"""The dashboard's frame: page config, the shared sidebar (API status, refresh), the data-source labels every page
carries, and `st.navigation` over the views in `views/`. Run: `streamlit run app/dashboard/main.py`
(or `cryptosentinel dashboard`); it reads everything from the API at `CRYPTOSENTINEL_API_URL`."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `app/` sits beside the package; `streamlit run` only adds this file's folder
    sys.path.insert(0, str(ROOT))

from app.dashboard import data, ui  # noqa: E402

HERE = Path(__file__).resolve().parent
PAGES = [  # (file, title, icon, url path)
    ("views/overview.py", "Overview", ":material/dashboard:", "overview"),
    ("views/forecasts.py", "Forecasts", ":material/show_chart:", "forecasts"),
    ("views/history.py", "Prediction history", ":material/history:", "history"),
    ("views/explain.py", "Explainability", ":material/psychology:", "explain"),
    ("views/regimes.py", "Market regime", ":material/layers:", "regimes"),
    ("views/drift.py", "Data drift", ":material/monitoring:", "drift"),
    ("views/pipeline.py", "Pipeline", ":material/account_tree:", "pipeline"),
]

st.set_page_config(page_title="CryptoSentinel", page_icon=":material/shield:", layout="wide")

with st.sidebar:
    st.markdown("### CryptoSentinel")
    health = data.health()
    if health["reachable"] and health.get("status") == 200:
        ready = data.ready()
        if ready.get("ready"):
            st.success("API ready", icon=":material/check_circle:")
        else:
            st.warning("API up, not ready: " + "; ".join(ready.get("reasons", [])[:3]), icon=":material/warning:")
    else:
        st.error(f"API not reachable at {data.api_url()}: start it with `cryptosentinel serve`.", icon=":material/power_off:")
    st.caption(f"API: {data.api_url()}")
    if st.button("Refresh data", icon=":material/refresh:", help=f"answers are cached for {data.TTL_S} s"):
        data.clear()
        st.rerun()

with contextlib.suppress(data.ApiError):  # each page says what is missing and what to do
    ui.source_labels(data.coins())

pg = st.navigation([st.Page(str(HERE / f), title=t, icon=i, url_path=u, default=(u == "overview"))
                    for f, t, i, u in PAGES])
pg.run()
