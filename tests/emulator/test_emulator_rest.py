"""The REST surface through the real twilio SDK: auth, validation, resources, limits, faults."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from robot.emulator import RunningEmulator

from .support import (
    ACCOUNT_SID,
    API_KEY_SECRET,
    API_KEY_SID,
    AUTH_TOKEN,
    CALLER,
    SCRIPT,
    ServiceStub,
    control,
    wait_call,
)

MakeClient = Callable[..., Client]


def test_bad_credentials_are_refused(emulator: RunningEmulator, make_client: MakeClient) -> None:
    for client in (
        make_client(emulator, password="wrong"),
        make_client(emulator, username="AC" + "9" * 32),
    ):
        with pytest.raises(TwilioRestException) as caught:
            client.calls.create(to="+15550000000", from_=CALLER, twiml="<Response/>")
        assert (caught.value.status, caught.value.code) == (401, 20003)
    response = requests.get(
        f"{emulator.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json", timeout=5
    )
    with response:
        assert response.status_code == 401
        assert response.json() == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        }
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_account_in_path_must_match(emulator: RunningEmulator, make_client: MakeClient) -> None:
    client = make_client(emulator, account_sid="AC" + "7" * 32)
    with pytest.raises(TwilioRestException) as caught:
        client.calls.create(to="+15550000000", from_=CALLER, twiml="<Response/>")
    assert caught.value.code == 20003


def test_api_key_credentials(
    make_emulator: Callable[..., RunningEmulator], make_client: MakeClient
) -> None:
    emulator = make_emulator(api_key_sid=API_KEY_SID, api_key_secret=API_KEY_SECRET)
    client = make_client(emulator, API_KEY_SID, API_KEY_SECRET, account_sid=ACCOUNT_SID)
    call = client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>", timeout=5)
    assert call.sid.startswith("CA")
    wrong = make_client(emulator, API_KEY_SID, AUTH_TOKEN, account_sid=ACCOUNT_SID)
    with pytest.raises(TwilioRestException) as caught:
        wrong.messages.create(to="+15550000000", from_=CALLER, body="hi")
    assert caught.value.code == 20003


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": "", "from_": CALLER, "url": "http://x/v"}, 21201),
        ({"to": "5550000000", "from_": CALLER, "url": "http://x/v"}, 21211),
        ({"to": "+1 555 000", "from_": CALLER, "url": "http://x/v"}, 21211),
        ({"to": "+15550000000", "from_": "", "url": "http://x/v"}, 21213),
        ({"to": "+15550000000", "from_": CALLER}, 21205),
        ({"to": "+15550000000", "from_": CALLER, "url": "not a url"}, 21205),
    ],
)
def test_call_validation(client: Client, kwargs: dict[str, str], code: int) -> None:
    with pytest.raises(TwilioRestException) as caught:
        client.calls.create(**kwargs)
    assert (caught.value.status, caught.value.code) == (400, code)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": "", "from_": CALLER, "body": "hi"}, 21604),
        ({"to": "12345", "from_": CALLER, "body": "hi"}, 21211),
        ({"to": "+15550000000", "body": "hi"}, 21603),
        ({"to": "+15550000000", "from_": CALLER, "body": ""}, 21602),
        ({"to": "+15550000000", "from_": CALLER, "body": "x" * 1601}, 21617),
        ({"to": "+15550000000", "from_": CALLER, "body": "x", "validity_period": 0}, 21624),
    ],
)
def test_message_validation(client: Client, kwargs: dict[str, str], code: int) -> None:
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(**kwargs)
    assert (caught.value.status, caught.value.code) == (400, code)


def test_number_faults(
    make_emulator: Callable[..., RunningEmulator], make_client: MakeClient
) -> None:
    emulator = make_emulator(
        callees={"+15550001111": "invalid", "+15550002222": "landline", "+15550003333": "opted-out"}
    )
    client = make_client(emulator)
    for number, code in (("+15550001111", 21211), ("+15550002222", 21614), ("+15550003333", 21610)):
        with pytest.raises(TwilioRestException) as caught:
            client.messages.create(to=number, from_=CALLER, body="hi")
        assert caught.value.code == code
    with pytest.raises(TwilioRestException) as caught:
        client.calls.create(to="+15550001111", from_=CALLER, twiml="<Response/>")
    assert caught.value.code == 21211
    # a landline takes calls fine
    call = client.calls.create(to="+15550002222", from_=CALLER, twiml="<Response/>")
    assert wait_call(emulator, call.sid)["status"] == "completed"


def test_call_resource_shape(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    service.set("/voice", SCRIPT)
    call = client.calls.create(to="+15550000000", from_=CALLER, url=service.url("/voice"))
    assert call.status == "queued"
    assert call.direction == "outbound-api"
    assert len(call.sid) == 34 and call.sid.startswith("CA")
    int(call.sid[2:], 16)
    assert call.account_sid == ACCOUNT_SID
    assert call.to == "+15550000000" and call.from_formatted == CALLER
    assert call.date_created is not None and call.date_created.tzinfo is not None
    assert call.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call.sid}.json"
    assert call.price is None and call.duration is None
    wait_call(emulator, call.sid)
    fetched = client.calls(call.sid).fetch()
    assert fetched.status == "completed"
    assert fetched.duration is not None and int(fetched.duration) > 0
    assert fetched.start_time is not None and fetched.end_time is not None
    with pytest.raises(TwilioRestException) as caught:
        client.calls("CA" + "0" * 32).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)


def test_list_filters_and_pages(client: Client, emulator: RunningEmulator) -> None:
    sids = [
        client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>", timeout=5).sid
        for _ in range(7)
    ]
    other = client.calls.create(to="+15550000015", from_=CALLER, twiml="<Response/>", timeout=5)
    listed = client.calls.list(to="+15550000005", page_size=3)
    assert [c.sid for c in listed] == list(reversed(sids))  # newest first, across 3 pages
    page = client.calls.page(page_size=3)
    assert page.next_page_url is not None and page.next_page_url.startswith(emulator.base_url)
    assert other.sid in [c.sid for c in client.calls.list(status="queued") + client.calls.list()]
    assert len(client.calls.list(limit=2)) == 2
    message = client.messages.create(to="+15550000000", from_=CALLER, body="hello")
    assert [m.sid for m in client.messages.list(to="+15550000000")] == [message.sid]
    assert client.messages.list(to="+15559999999") == []
    assert client.messages(message.sid).fetch().body == "hello"


def test_requests_are_recorded(client: Client, emulator: RunningEmulator) -> None:
    call = client.calls.create(
        to="+15550000005",
        from_=CALLER,
        twiml="<Response/>",
        timeout=5,
        status_callback="http://127.0.0.1:9/cb",
        status_callback_event=["ringing", "answered"],
    )
    with pytest.raises(TwilioRestException):
        client.calls.create(to="bad", from_=CALLER, twiml="<Response/>")
    client.calls(call.sid).fetch()
    records = control(emulator, "GET", "/requests")
    assert [(r["method"], r["status"]) for r in records] == [
        ("POST", 201),
        ("POST", 400),
        ("GET", 200),
    ]
    first = records[0]
    assert first["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert first["params"]["StatusCallbackEvent"] == ["ringing", "answered"]
    assert first["params"]["To"] == "+15550000005"
    assert first["sid"] == call.sid and first["auth_user"] == ACCOUNT_SID
    assert first["time"] > 0 and first["timestamp"].endswith("+0000")


def test_fault_injection(client: Client, emulator: RunningEmulator) -> None:
    control(emulator, "POST", "/faults", json={"kind": "calls", "count": 2, "status": 503})
    control(
        emulator,
        "POST",
        "/faults",
        json={"kind": "messages", "count": 1, "status": 500, "code": 30008},
    )
    for _ in range(2):
        with pytest.raises(TwilioRestException) as caught:
            client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>")
        assert (caught.value.status, caught.value.code) == (503, 20503)
    client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>", timeout=5)
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to="+15550000000", from_=CALLER, body="hi")
    assert (caught.value.status, caught.value.code) == (500, 30008)
    client.messages.create(to="+15550000000", from_=CALLER, body="hi")
    control(emulator, "POST", "/faults", json={"kind": "calls", "count": 1, "status": 429})
    with pytest.raises(TwilioRestException) as caught:
        client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>")
    assert (caught.value.status, caught.value.code) == (429, 20429)
    response = requests.post(emulator.base_url + "/_emulator/faults", json={"kind": "x"}, timeout=5)
    with response:
        assert response.status_code == 400


def test_calls_per_second_limit(
    make_emulator: Callable[..., RunningEmulator], make_client: MakeClient
) -> None:
    client = make_client(make_emulator(calls_per_second=3))
    results = []
    for _ in range(5):
        try:
            client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>", timeout=5)
            results.append("ok")
        except TwilioRestException as exc:
            assert "Too Many Requests" in exc.msg
            results.append((exc.status, exc.code))
    assert results == ["ok", "ok", "ok", (429, 20429), (429, 20429)]
    # messages are not limited by the call rate
    client.messages.create(to="+15550000000", from_=CALLER, body="hi")


def test_concurrent_call_limit(
    make_emulator: Callable[..., RunningEmulator], make_client: MakeClient
) -> None:
    emulator = make_emulator(max_concurrent_calls=2)
    client = make_client(emulator)
    # They ring for 600 emulated seconds (12 s real), so both are still up when the third comes.
    first = client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>", timeout=600)
    client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>", timeout=600)
    with pytest.raises(TwilioRestException) as caught:
        client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>")
    assert (caught.value.status, caught.value.code) == (429, 20429)
    client.calls(first.sid).update(status="canceled")
    wait_call(emulator, first.sid)
    client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>", timeout=5)
