"""Layout helpers every view shares: the one way to say a section has no data, the data-source labels, freshness
badges, and Plotly styling (titles, axis labels with units, colours readable on light and dark backgrounds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import plotly.graph_objects as go
import streamlit as st

from app.dashboard import data
from app.dashboard.data import ApiError

T = TypeVar("T")

# mid-luminance colours: legible on Streamlit's white and its dark (#0e1117) background alike
BLUE, ORANGE, GREEN, RED, PURPLE, GREY, TEAL = "#3b82f6", "#f59e0b", "#22c55e", "#ef4444", "#a855f7", "#94a3b8", "#14b8a6"
PALETTE = [BLUE, ORANGE, GREEN, RED, PURPLE, TEAL, "#ec4899", "#eab308"]
SEVERITY_COLOURS = {"critical": RED, "warning": ORANGE, "info": BLUE}


def band(hex_colour: str, alpha: float) -> str:
    "A translucent fill of a palette colour."
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def fetch(what: str, call: Callable[[], T], todo: str = "") -> T | None:
    """Run a data call; on failure show one sentence (what happened, what to do) and return None.

    `what` names the section ("price history"); `todo` is what to do when there is simply no data yet."""
    try:
        return call()
    except ApiError as err:
        if err.down:
            st.error(err.message, icon=":material/power_off:")
        elif err.missing:
            st.info(f"No {what} yet: {_sentence(err.message)}" + (f" {todo}" if todo else ""), icon=":material/info:")
        else:
            st.warning(f"The API refused the {what} request ({err.status} {err.code or ''}): {err.message}",
                       icon=":material/warning:")
        return None


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def empty(what: str, todo: str) -> None:
    "The sentence for a section whose answer is empty."
    st.info(f"No {what} yet. {todo}", icon=":material/info:")


def figure(fig: go.Figure, title: str, x: str, y: str, height: int = 380, **layout: Any) -> go.Figure:
    "Title and axis labels (with units) on every chart; the theme's background so light and dark both read."
    fig.update_layout(title=dict(text=title), xaxis_title=x, yaxis_title=y, height=height,
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.2), **layout)
    return fig


def chart(fig: go.Figure, key: str | None = None) -> None:
    st.plotly_chart(fig, width="stretch", theme="streamlit", key=key)


def table(label: str, df: Any, expanded: bool = False) -> None:
    "A table behind a chart: in an expander, closed by default."
    with st.expander(label, expanded=expanded):
        st.dataframe(df, width="stretch", hide_index=True)


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    s = abs(float(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.0f} s"


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def source_labels(coins: list[dict[str, Any]]) -> None:
    "Simulated data labelled as such; CoinGecko data with its attribution; snapshots said to be snapshots."
    sources = {c.get("source") for c in coins if c.get("source")}
    if "synthetic" in sources:
        st.warning("**Simulated data**: the prices on this page come from the built-in simulator, not from a "
                   "market. Use them to try the system, not to trade.", icon=":material/science:")
    if "coingecko" in sources:
        # the package's one copy of the wording CoinGecko's terms ask for
        from cryptosentinel.ingest import ATTRIBUTION
        st.caption(f"[{ATTRIBUTION}](https://www.coingecko.com/en/api)")
    if "csv" in sources:
        st.caption("Prices from a CSV snapshot: freshness is judged as of its last bar, not against the clock.")


def coin_names_or_stop() -> list[str]:
    "The configured coins; without any (API down, empty store) the page says why and stops here."
    names = data.coin_names()
    if not names:
        fetch("coins", data.coins)
        st.stop()
    return names
