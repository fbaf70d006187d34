"""Discord and Slack notifications against a webhook receiver on 127.0.0.1: the payload formats, retries,
and dead webhooks (closed port, 500) that are logged and never fail the run."""

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from pydantic import SecretStr

from cryptosentinel.alerts import open_alerts, raise_alerts
from cryptosentinel.config import Settings, StoreError, get_settings
from cryptosentinel.notify import Alert, Notifier, discord_payloads, notify_failure, slack_payloads
from cryptosentinel.store_local import LocalStore

pytestmark = pytest.mark.code

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")
ALERTS = [
    Alert("price_move_1h", "critical", "ethereum", "ethereum moved -12.0% in 1 h",
          {"change": -0.12, "window_h": 1, "ts": "2024-03-01T11:00:00+00:00"}, T0),
    Alert("drift", "warning", None, "drift: 12 of 35 features drifted",
          {"drifted_features": ["vol_24", "atr_14"], "drift_share": 0.34}, T0),
]


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request; answers from a script of status codes."""

    def __init__(self, statuses=(204,)):
        self.requests: list[dict] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                          "headers": dict(self.headers), "body": json.loads(body)})
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_discord_payload_format():
    with Receiver() as rx:
        out = Notifier(discord_url=rx.url + "/api/webhooks/123/token").send(ALERTS)
    assert out == {"discord": "sent"}
    [req] = rx.requests
    assert req["path"] == "/api/webhooks/123/token" and req["content_type"] == "application/json"
    body = req["body"]
    assert set(body) == {"content", "embeds"} and "1 warning" in body["content"] and "1 critical" in body["content"]
    first = body["embeds"][0]
    assert first["title"] == "[CRITICAL] price_move_1h · ethereum"
    assert first["description"] == "ethereum moved -12.0% in 1 h"
    assert first["color"] == 0xE74C3C and first["timestamp"] == T0.isoformat()
    assert {"name": "change", "value": "-0.12", "inline": True} in first["fields"]
    assert body["embeds"][1]["title"] == "[WARNING] drift"


def test_slack_payload_format():
    with Receiver(statuses=(200,)) as rx:
        out = Notifier(slack_url=rx.url + "/services/T/B/X").send(ALERTS)
    assert out == {"slack": "sent"}
    [req] = rx.requests
    body = req["body"]
    assert set(body) == {"text", "blocks"} and body["text"].startswith("CryptoSentinel:")
    section = body["blocks"][0]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "*[CRITICAL] price_move_1h · ethereum*" in section["text"]["text"]
    assert "ethereum moved -12.0% in 1 h" in section["text"]["text"]
    assert body["blocks"][1]["type"] == "context" and "window_h: 1" in body["blocks"][1]["elements"][0]["text"]
    assert len(body["blocks"]) == 2 * len(ALERTS)


def test_payloads_respect_platform_limits():
    many = [Alert("rsi_overbought", "info", f"c{i}", "m", {}, T0) for i in range(23)]
    assert [len(p["embeds"]) for p in discord_payloads(many)] == [10, 10, 3]
    assert all(len(p["blocks"]) <= 50 for p in slack_payloads(many))


def test_both_webhooks_from_settings(monkeypatch):
    with Receiver() as rx:
        monkeypatch.setenv("CRYPTOSENTINEL_DISCORD_WEBHOOK_URL", rx.url + "/discord")
        monkeypatch.setenv("CRYPTOSENTINEL_SLACK_WEBHOOK_URL", rx.url + "/slack")
        monkeypatch.setenv("CRYPTOSENTINEL_WEBHOOK_RETRIES", "0")
        get_settings.cache_clear()
        notifier = Notifier.from_settings()
        assert notifier.channels == ["discord", "slack"] and notifier.retries == 0
        assert notifier.send(ALERTS) == {"discord": "sent", "slack": "sent"}
    assert sorted(r["path"] for r in rx.requests) == ["/discord", "/slack"]


def test_not_configured_sends_nothing():
    assert Notifier().send(ALERTS) == {}
    assert Notifier.from_settings().channels == []


def test_dead_webhook_closed_port_is_logged_not_raised(caplog):
    url = f"http://127.0.0.1:{closed_port()}/webhook-secret-token"
    with caplog.at_level(logging.WARNING, logger="cryptosentinel.notify"):
        out = Notifier(discord_url=url, timeout_s=1, retries=1, backoff_s=0.01).send(ALERTS)
    assert out["discord"].startswith("failed: ConnectError")
    assert "discord webhook failed after 2 attempt(s)" in caplog.text
    assert "webhook-secret-token" not in caplog.text  # the URL is a secret


def test_server_error_is_retried_then_logged(caplog):
    with Receiver(statuses=(500,)) as rx, caplog.at_level(logging.WARNING, logger="cryptosentinel.notify"):
        out = Notifier(slack_url=rx.url + "/s", retries=2, backoff_s=0.01).send(ALERTS)
    assert out["slack"].startswith("failed") and "500" in out["slack"]
    assert len(rx.requests) == 3  # the first attempt and two retries
    assert "slack webhook failed after 3 attempt(s)" in caplog.text


def test_rate_limit_then_success():
    with Receiver(statuses=(429, 204)) as rx:
        out = Notifier(discord_url=rx.url + "/d", retries=2, backoff_s=0.01).send(ALERTS[:1])
    assert out == {"discord": "sent"} and len(rx.requests) == 2


def test_client_error_is_not_retried():
    with Receiver(statuses=(404,)) as rx:
        out = Notifier(discord_url=rx.url + "/d", retries=3, backoff_s=0.01).send(ALERTS[:1])
    assert out["discord"].startswith("failed: HTTPStatusError") and len(rx.requests) == 1


def test_raise_alerts_stores_and_sends_even_when_a_webhook_is_dead(tmp_path):
    with Receiver() as rx, LocalStore(tmp_path / "store.sqlite") as store:
        notifier = Notifier(discord_url=f"http://127.0.0.1:{closed_port()}/d", slack_url=rx.url + "/s",
                            timeout_s=1, retries=0)
        raised = raise_alerts(store, ALERTS, notifier)
        assert raised == ALERTS
        record = store.runs("alert")[0]["record"]
        assert record["sent"]["slack"] == "sent" and record["sent"]["discord"].startswith("failed")
        assert open_alerts(store, now=T0)["open"] == 2
        # within the cooldown nothing is sent again
        assert raise_alerts(store, ALERTS, notifier) == []
    assert len(rx.requests) == 1


def test_notify_failure(tmp_path):
    with Receiver() as rx, LocalStore(tmp_path / "store.sqlite") as store:
        alert = notify_failure("features", "Failed", ValueError("prices lack column 'close'"),
                               "reports/03_features-2024-03-01.ipynb", notifier=Notifier(discord_url=rx.url + "/d"),
                               store=store, now=T0)
        stored = store.runs("alert")[0]["record"]["alerts"][0]
    assert (alert.rule, alert.severity, alert.coin) == ("pipeline_failed", "critical", None)
    assert alert.values == {"flow": "features", "state": "Failed", "error": "ValueError: prices lack column 'close'",
                            "notebook_path": "reports/03_features-2024-03-01.ipynb"}
    embed = rx.requests[0]["body"]["embeds"][0]
    assert embed["title"] == "[CRITICAL] pipeline_failed" and "reports/03_features-2024-03-01.ipynb" in embed["description"]
    assert stored["rule"] == "pipeline_failed"


def test_notify_failure_never_raises(tmp_path, caplog):
    class BrokenStore:
        def record_run(self, kind, record):
            raise StoreError("disk full")

    dead = Notifier(slack_url=f"http://127.0.0.1:{closed_port()}/s", timeout_s=1, retries=0)
    with caplog.at_level(logging.WARNING, logger="cryptosentinel.notify"):
        alert = notify_failure("inference", "Crashed", None, notifier=dead, store=BrokenStore())
    assert alert.message.startswith("pipeline inference Crashed: unknown error")
    assert "slack webhook failed" in caplog.text and "could not store the failure" in caplog.text


def test_from_settings_uses_the_settings_it_is_given(monkeypatch):
    """Injected settings are used as given, never replaced by the process settings."""
    given = Settings(_env_file=None, slack_webhook_url=SecretStr("https://slack.test/s"),
                     monitoring={"webhook_timeout_s": 1.5, "webhook_retries": 0})
    monkeypatch.setenv("CRYPTOSENTINEL_DISCORD_WEBHOOK_URL", "https://discord.test/d")
    monkeypatch.setenv("CRYPTOSENTINEL_WEBHOOK_RETRIES", "4")
    get_settings.cache_clear()
    notifier = Notifier.from_settings(given)
    assert (notifier.channels, notifier.timeout_s, notifier.retries) == (["slack"], 1.5, 0)
    assert Notifier.from_settings().channels == ["discord"] and Notifier.from_settings().retries == 4


def test_a_bug_in_notify_failure_keeps_its_traceback():
    """Only the store's own errors are swallowed by the failure hook; a bug is raised."""
    class BuggyStore:
        def record_run(self, kind, record):
            raise KeyError("bug")

    with pytest.raises(KeyError):
        notify_failure("inference", "Failed", None, notifier=Notifier(), store=BuggyStore())


def test_invalid_webhook_url_is_logged_not_raised(caplog):
    with caplog.at_level(logging.WARNING, logger="cryptosentinel.notify"):
        out = Notifier(discord_url="not a url", retries=0).send(ALERTS[:1])
    assert out["discord"].startswith("failed") and "discord webhook failed" in caplog.text


def test_notify_failure_uses_the_settings_it_is_given():
    with Receiver() as rx:
        given = Settings(_env_file=None, discord_webhook_url=SecretStr(rx.url + "/d"))
        notify_failure("train", "Failed", "boom", settings=given, now=T0)
    assert [r["path"] for r in rx.requests] == ["/d"]
