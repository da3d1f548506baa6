"""The provider reads proxy and CA settings from the environment once, for its own host, and
sends what requests would have sent (the SDK's own client is requests)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from robot.config import TwilioSettings
from robot.providers.twilio import TwilioProvider

ACCOUNT = "AC" + "0" * 32


def _http(base_url: str) -> object:
    provider = TwilioProvider(
        TwilioSettings(account_sid=ACCOUNT, auth_token="token", api_base_url=base_url)
    )
    return provider._client.http_client


_SETTINGS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE")


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*_SETTINGS, "CURL_CA_BUNDLE", *(n.lower() for n in _SETTINGS[:4])):
        monkeypatch.delenv(name, raising=False)


def test_a_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    http = _http("https://api.twilio.com")
    assert http.proxy == {"https": "http://proxy.example:3128"}  # type: ignore[attr-defined]
    pool = http._pool  # type: ignore[attr-defined]
    assert isinstance(pool, urllib3.ProxyManager)
    assert pool.proxy.url == "http://proxy.example:3128"


def test_no_proxy_exempts_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.twilio.com")
    http = _http("https://api.twilio.com")
    assert http.proxy == {}  # type: ignore[attr-defined]
    assert not isinstance(http._pool, urllib3.ProxyManager)  # type: ignore[attr-defined]


def test_a_ca_bundle_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    http = _http("https://api.twilio.com")
    assert http.verify == "/etc/ssl/corporate.pem"  # type: ignore[attr-defined]
    kw = http._pool.connection_pool_kw  # type: ignore[attr-defined]
    assert kw["ca_certs"] == "/etc/ssl/corporate.pem"
    assert kw["cert_reqs"] == "CERT_REQUIRED"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    default = _http("https://api.twilio.com")
    assert default.verify is True  # type: ignore[attr-defined]
    # As requests does: certifi's bundle, not whatever the system store holds.
    kw = default._pool.connection_pool_kw  # type: ignore[attr-defined]
    assert (kw["ca_certs"], kw["cert_reqs"]) == (DEFAULT_CA_BUNDLE_PATH, "CERT_REQUIRED")


class _Recorder:
    """Stands in for the urllib3 pool: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: dict[str, Any] = {}

    def urlopen(self, method: str, url: str, **kwargs: Any) -> Any:
        self.sent = {"method": method, "url": url, **kwargs}
        return urllib3.HTTPResponse(body=b'{"ok": true}', status=201, headers={"X-A": "b"})


@pytest.mark.parametrize(
    ("method", "params", "data", "headers"),
    [
        (
            "POST",
            None,
            {
                "To": "+8613800138000",
                "Body": "提醒：警惕诈骗 & 100%",
                "StatusCallbackEvent": ["initiated", "ringing", "completed"],
                "Timeout": 30,
            },
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        ),
        ("GET", {"To": "+8613800138000", "PageSize": 20}, None, {"Accept": "application/json"}),
        (
            "POST",
            None,
            {"a": [1, 2], "b": {"c": "d"}},
            {"Content-Type": "application/json"},
        ),
    ],
)
def test_requests_are_what_requests_would_send(
    method: str, params: Any, data: Any, headers: dict[str, str]
) -> None:
    http: Any = _http("http://emulator.example:8080/base")
    http._pool = recorder = _Recorder()
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    response = http.request(
        method, url, params=params, data=data, headers=dict(headers), auth=(ACCOUNT, "token")
    )
    assert (response.status_code, response.text) == (201, '{"ok": true}')
    expected = requests.Request(
        method,
        url.replace("https://api.twilio.com", "http://emulator.example:8080/base"),
        params=params,
        headers=dict(headers),
        auth=(ACCOUNT, "token"),
        **({"json": data} if headers.get("Content-Type") == "application/json" else {"data": data}),
    ).prepare()
    sent = recorder.sent
    assert (sent["method"], sent["url"]) == (expected.method, expected.url)
    body = expected.body.encode() if isinstance(expected.body, str) else expected.body
    assert sent["body"] == body
    sent_headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert sent_headers["authorization"] == expected.headers["Authorization"]
    for key, value in headers.items():
        assert sent_headers[key.lower()] == value
    assert sent["redirect"] is False and sent["retries"] is False
