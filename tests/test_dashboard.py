"""The Streamlit dashboard through `AppTest` from its entrypoint, against a LIVE API on loopback (uvicorn in a
thread) serving a store and registry trained from the simulator and from a small window of the real hourly data:
every page renders with no exception and shows its key elements; with the API down and with an empty store every
page says what to do, never a traceback. The helpers here (`trained_sim`, `live_api`) also serve the browser test."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from api_builders import ADMIN_KEY, no_shap, trained
from builders import HOURLY, shared_prices, simulated_prices

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from app.api.main import create_app  # noqa: E402
from cryptosentinel.config import Settings  # noqa: E402
from cryptosentinel.registry_mlflow import LocalRegistry  # noqa: E402
from cryptosentinel.service import ServiceState  # noqa: E402
from cryptosentinel.store_local import LocalStore  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.slow]  # a test of units may say `code`

ENTRY = ROOT / "app" / "dashboard" / "main.py"
COINS = ["bitcoin", "ethereum"]
PAGES = ("overview", "forecasts", "history", "explain", "regimes", "drift", "pipeline")
MIN_CHARTS = {"overview": 3, "forecasts": 3, "history": 4, "explain": 2, "regimes": 4, "drift": 2, "pipeline": 3}
SIM_CHARTS = {  # page -> chart titles it must draw on the simulated store (issue 12's pages)
    "explain": ("Global SHAP importance of",),
    "regimes": ("on the first two principal components, coloured by regime",),
    "drift": ("Drift score per feature over time",),
    "pipeline": ("Time since each scheduled flow last succeeded",)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_api(settings: Settings, store: Any, registry: Any, run_flow: Any = None) -> Iterator[str]:
    "The API app (with its lifespan) served by uvicorn in a thread on a free loopback port; yields its base URL."
    import uvicorn

    def factory(s: Settings) -> ServiceState:
        return ServiceState(store, registry, s, explain=no_shap, run_flow=run_flow)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, state_factory=factory), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def trained_sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, LocalStore, LocalRegistry]:
    "A store and registry trained from the simulator, built once per session (the browser test reuses it)."
    root = tmp_path_factory.getbasetemp() / "dashboard_sim"
    done = root / "trained.ok"
    if done.exists():
        settings = Settings(data_dir=root, coins=COINS, horizons=[24], source="synthetic",
                            api={"admin_api_key": ADMIN_KEY})
        return settings, LocalStore(root / "store.sqlite"), LocalRegistry(root / "registry")
    root.mkdir(parents=True, exist_ok=True)
    out = trained(root, simulated_prices(COINS, "2024-01-01", "2024-05-01"), COINS)
    done.touch()
    return out


def run_page(at: Any, page: str) -> Any:
    at.switch_page(f"views/{page}.py")
    return at.run()


def texts(at: Any) -> list[str]:
    "Every text the page shows (markdown, captions, alerts, metrics)."
    out = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader"):
        out += [str(e.value) for e in getattr(at, kind)]
    out += [f"{m.label} {m.value}" for m in at.metric]
    return out


def assert_clean(at: Any, page: str) -> None:
    assert not at.exception, (page, [e.value for e in at.exception])
    shown = " ".join(texts(at))
    assert "Traceback" not in shown and "Error:" not in shown.replace("ConnectError", ""), (page, shown[:500])


@pytest.fixture
def app_test(monkeypatch):
    "An AppTest of the entrypoint, pointed at `url` by the caller (answers cached by URL, cleared per test)."
    from streamlit.testing.v1 import AppTest

    from app.dashboard import data

    def make(url: str, admin_key: str | None = None) -> Any:
        monkeypatch.setenv("CRYPTOSENTINEL_API_URL", url)
        if admin_key:
            monkeypatch.setenv("CRYPTOSENTINEL_API__ADMIN_API_KEY", admin_key)
        else:
            monkeypatch.delenv("CRYPTOSENTINEL_API__ADMIN_API_KEY", raising=False)
        from cryptosentinel.config import get_settings
        get_settings.cache_clear()
        data.clear()
        at = AppTest.from_file(str(ENTRY), default_timeout=120)
        at.run()
        return at
    yield make
    data.clear()


@pytest.fixture(scope="module")
def sim_api(tmp_path_factory):
    settings, store, registry = trained_sim(tmp_path_factory)
    jobs: list[str] = []
    with live_api(settings, store, registry, run_flow=lambda flow, s, **kw: jobs.append(flow)) as url:
        yield url, jobs


def test_every_page_on_the_simulated_store(sim_api, app_test):
    url, jobs = sim_api
    at = app_test(url, ADMIN_KEY)
    assert_clean(at, "frame")
    for page in PAGES:
        t0 = time.perf_counter()
        at = run_page(at, page)
        took = time.perf_counter() - t0
        assert_clean(at, page)
        charts = at.get("plotly_chart")
        assert len(charts) >= MIN_CHARTS[page], (page, len(charts))
        shown = " ".join(texts(at))
        assert "Simulated data" in shown, page  # labelled on every page
        assert not at.error, (page, [e.value for e in at.error])
        print(f"AppTest {page}: {took:.2f} s, {len(charts)} charts")
        specs = " ".join(c.proto.spec for c in charts)
        for title in SIM_CHARTS.get(page, ()):
            assert title in specs, (page, title)
        if page == "overview":
            assert len(at.metric) >= 5 and any(m.label == "Data as of" for m in at.metric)
            assert any("Latest forecasts" in e.label for e in at.expander)
        elif page == "forecasts":
            assert any("Champions" in e.label for e in at.expander)
        elif page == "history":
            assert {m.label for m in at.metric} >= {"80% coverage", "95% coverage"}
        elif page == "explain":
            assert any("gate" in e.label for e in at.expander)
        elif page == "regimes":
            assert any(m.label == "Current regime" for m in at.metric)
        elif page == "drift":
            assert any(m.label == "Drift detected" for m in at.metric) and "DeepChecks" in shown
        elif page == "pipeline":
            labels = [b.label for b in at.button]
            assert "Start a run" in labels and "Reload the champions" in labels
            assert any("Schedule gaps" in s.value for s in at.subheader)
            assert any("Flow status" in e.label for e in at.expander)
    start = next(b for b in at.button if b.label == "Start a run")
    at = start.click().run()
    assert_clean(at, "pipeline: start a run")
    assert any("submitted as job" in s.value for s in at.success), [s.value for s in at.success]
    assert jobs == ["feature_pipeline"]
    at = next(b for b in at.button if b.label == "Reload the champions").click().run()
    assert any("champions" in s.value for s in at.success), [s.value for s in at.success]


def test_selectors_change_the_page(sim_api, app_test):
    url, _ = sim_api
    at = run_page(app_test(url), "forecasts")
    at.selectbox[0].select("ethereum")
    at.selectbox[2].select(7)
    at = at.run()
    assert_clean(at, "forecasts: ethereum, 7 days")
    assert "Ethereum: the last 7 days" in at.get("plotly_chart")[0].proto.spec


def test_admin_buttons_hidden_without_the_key(sim_api, app_test):
    url, _ = sim_api
    at = run_page(app_test(url, None), "pipeline")
    assert_clean(at, "pipeline")
    assert not [b for b in at.button if b.label in ("Start a run", "Reload the champions")]
    assert any("Admin actions are hidden" in c.value for c in at.caption)


def test_every_page_with_the_api_down(app_test):
    at = app_test(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    for page in PAGES:
        at = run_page(at, page)
        assert_clean(at, page)
        assert not at.get("plotly_chart"), page
        assert any("not reachable" in e.value and "cryptosentinel serve" in e.value for e in at.error), page


def test_every_page_on_an_empty_store(tmp_path, app_test):
    settings = Settings(data_dir=tmp_path, coins=COINS, horizons=[24], source="synthetic")
    store, registry = LocalStore(tmp_path / "store.sqlite"), LocalRegistry(tmp_path / "registry")
    with live_api(settings, store, registry) as url:
        at = app_test(url)
        for page in PAGES:
            at = run_page(at, page)
            assert_clean(at, page)
            assert not at.error, (page, [e.value for e in at.error])
            said = [i.value for i in at.info]
            assert said and said[0].startswith("No ") and "`cryptosentinel" in " ".join(said), (page, said)


@pytest.mark.data
@pytest.mark.shared_data
def test_every_page_on_the_real_hourly_data(shared_data, tmp_path_factory, app_test):
    prices = shared_prices(shared_data, HOURLY, COINS)
    prices = prices[prices["ts"] >= prices["ts"].max() - pd.Timedelta(days=150)].reset_index(drop=True)
    settings, store, registry = trained(tmp_path_factory.mktemp("dash_real"), prices, COINS, source="csv")
    with live_api(settings, store, registry) as url:
        at = app_test(url)
        for page in PAGES:
            at = run_page(at, page)
            assert_clean(at, page)
            assert len(at.get("plotly_chart")) >= min(MIN_CHARTS[page], 2), page
            shown = " ".join(texts(at))
            assert "Simulated data" not in shown and "CSV snapshot" in shown, page


@pytest.mark.code
def test_source_labels_say_where_the_prices_come_from():
    from streamlit.testing.v1 import AppTest

    def page(sources: list[str]) -> None:
        from app.dashboard import ui
        ui.source_labels([{"coin": f"c{i}", "source": s} for i, s in enumerate(sources)])

    at = AppTest.from_function(page, args=(["coingecko"],)).run()
    assert not at.warning and "Data provided by CoinGecko" in at.caption[0].value
    at = AppTest.from_function(page, args=(["synthetic", "synthetic"],)).run()
    assert "Simulated data" in at.warning[0].value and not at.caption
    at = AppTest.from_function(page, args=(["csv"],)).run()
    assert "CSV snapshot" in at.caption[0].value and not at.warning
