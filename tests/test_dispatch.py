"""GitHub repository dispatch (monitoring asks the training workflow to run) against a receiver on 127.0.0.1
standing in for GitHub's API: the request GitHub documents, 204 as success, and a refusing or dead GitHub
that is logged and never fails the run."""

import logging

import pandas as pd
import pytest
from test_webhooks import Receiver

from cryptosentinel.config import ConfigError
from cryptosentinel.notify import Notifier, repository_dispatch

pytestmark = pytest.mark.code

TOKEN = "ghp_secret-token-value"
REASONS = {"reason": "skill", "breaches": [{"kind": "model_skill", "horizon": 24, "ratio": 1.08}],
           "checked_at": pd.Timestamp("2024-03-01 12:00", tz="UTC")}


# the webhook receiver stands in for GitHub's `POST /repos/{owner}/{repo}/dispatches` (path, headers, body kept)
GitHub = Receiver


def fast(retries: int = 1) -> Notifier:
    return Notifier(timeout_s=2, retries=retries, backoff_s=0.01)


def test_dispatch_sends_what_github_documents():
    with GitHub() as gh:
        out = repository_dispatch("retrain", REASONS, repository="octo/cryptosentinel", token=TOKEN,
                                  api_url=gh.url + "/", notifier=fast())
    assert out == "sent"
    [req] = gh.requests
    assert req["path"] == "/repos/octo/cryptosentinel/dispatches"
    assert req["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert req["headers"]["Accept"] == "application/vnd.github+json"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["body"] == {"event_type": "retrain", "client_payload": {
        "reason": "skill", "breaches": [{"kind": "model_skill", "horizon": 24, "ratio": 1.08}],
        "checked_at": "2024-03-01T12:00:00+00:00"}}


def test_server_error_is_retried_then_sent():
    with GitHub(statuses=(503, 204)) as gh:
        out = repository_dispatch("retrain", repository="o/r", token=TOKEN, api_url=gh.url, notifier=fast(2))
    assert out == "sent" and len(gh.requests) == 2


def test_server_error_is_logged_not_raised(caplog):
    with GitHub(statuses=(500,)) as gh, caplog.at_level(logging.WARNING, logger="cryptosentinel.notify"):
        out = repository_dispatch("retrain", repository="o/r", token=TOKEN, api_url=gh.url, notifier=fast(2))
    assert out.startswith("failed: RetryableError") and "500" in out
    assert len(gh.requests) == 3  # the first attempt and two retries
    assert "repository dispatch 'retrain' to o/r failed: RetryableError: 500" in caplog.text
    assert TOKEN not in caplog.text


def test_refusal_is_not_retried(caplog):
    with GitHub(statuses=(404,)) as gh, caplog.at_level(logging.WARNING, logger="cryptosentinel.notify"):
        out = repository_dispatch("retrain", repository="o/r", token=TOKEN, api_url=gh.url, notifier=fast(3))
    assert out.startswith("failed: HTTPStatusError: HTTP 404") and len(gh.requests) == 1
    assert "failed: HTTPStatusError: HTTP 404" in caplog.text


def test_an_answer_other_than_204_is_a_failure(caplog):
    with GitHub(statuses=(200,)) as gh, caplog.at_level(logging.WARNING, logger="cryptosentinel.notify"):
        out = repository_dispatch("retrain", repository="o/r", token=TOKEN, api_url=gh.url, notifier=fast())
    assert out == "failed: HTTP 200" and "answered HTTP 200 instead of 204" in caplog.text


def test_dead_github_is_logged_not_raised(caplog):
    with GitHub() as gh:
        dead = gh.url  # the receiver is gone after the block: its port refuses connections
    with caplog.at_level(logging.WARNING, logger="cryptosentinel.notify"):
        out = repository_dispatch("retrain", repository="o/r", token=TOKEN, api_url=dead, notifier=fast())
    assert out.startswith("failed: ConnectError")
    assert "to o/r failed: ConnectError" in caplog.text and TOKEN not in caplog.text


def test_without_repository_or_token_nothing_is_sent():
    with GitHub() as gh:
        assert repository_dispatch("retrain", repository="o/r", token="", api_url=gh.url) == "not configured"
        assert repository_dispatch("retrain", repository=None, token=TOKEN, api_url=gh.url) == "not configured"
    assert gh.requests == []


def test_a_malformed_repository_is_logged_not_raised(caplog):
    with caplog.at_level(logging.WARNING, logger="cryptosentinel.notify"):
        out = repository_dispatch("retrain", repository="https://github.com/o/r", token=TOKEN)
    assert out.startswith("failed: repository must be owner/name") and "must be owner/name" in caplog.text


@pytest.mark.parametrize(("event_type", "payload", "message"), [
    ("", None, "event_type"),
    ("x" * 101, None, "event_type"),
    ("retrain", {f"k{i}": i for i in range(11)}, "at most 10 top-level keys"),
])
def test_a_request_github_would_refuse_is_a_clear_error(event_type, payload, message):
    with pytest.raises(ConfigError, match=message):
        repository_dispatch(event_type, payload, repository="o/r", token=TOKEN)


def test_inference_run_with_drift_asks_github_to_retrain(monkeypatch):
    from cryptosentinel.config import Settings
    from cryptosentinel.flows import RETRAIN_EVENT, request_retraining
    predicted = {"as_of": "2024-03-01T12:00:00+00:00",
                 "monitoring": {"drift": {"drift_detected": True, "drifted_features": ["ret_24", "rv_24"]},
                                "performance": {"breaches": []}}}
    monkeypatch.setenv("GITHUB_REPOSITORY", "octo/cryptosentinel")
    monkeypatch.setenv("CRYPTOSENTINEL_GITHUB_TOKEN", TOKEN)
    with GitHub() as gh:
        assert request_retraining(predicted, Settings(), api_url=gh.url) == "sent"
        quiet = {"monitoring": {"drift": {"drift_detected": False}, "performance": {"breaches": []}}}
        assert request_retraining(quiet, Settings(), api_url=gh.url) is None  # nothing to ask: nothing sent
    [req] = gh.requests
    assert req["path"] == "/repos/octo/cryptosentinel/dispatches"
    assert req["body"] == {"event_type": RETRAIN_EVENT, "client_payload": {
        "drift": True, "drifted_features": ["ret_24", "rv_24"], "breaches": [], "as_of": "2024-03-01T12:00:00+00:00"}}
