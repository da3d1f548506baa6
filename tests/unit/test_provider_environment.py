"""The provider reads proxy and CA settings from the environment once, for its own host."""

from __future__ import annotations

import pytest

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
    assert http.session.trust_env is False  # type: ignore[attr-defined]


def test_no_proxy_exempts_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.twilio.com")
    assert _http("https://api.twilio.com").proxy == {}  # type: ignore[attr-defined]


def test_a_ca_bundle_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    assert _http("https://api.twilio.com").session.verify == "/etc/ssl/corporate.pem"  # type: ignore[attr-defined]
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert _http("https://api.twilio.com").session.verify is True  # type: ignore[attr-defined]
