"""The control API: health, overrides, reset, inbound calls, and the app without a server."""

from __future__ import annotations

import pytest
import requests
from twilio.rest import Client

from robot.emulator import EmulatorSettings, RunningEmulator, create_emulator_app, emulator_state
from robot.heap import GrowingRecords

from .support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CALLER,
    SCRIPT,
    THANKS,
    Hit,
    ServiceStub,
    control,
    wait_call,
)


def test_health(emulator: RunningEmulator) -> None:
    health = control(emulator, "GET", "/health")
    assert health["status"] == "ok" and health["calls"] == 0


def test_callee_overrides_at_run_time(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    control(emulator, "POST", "/callees", json={"+15550000000": "busy"})
    assert control(emulator, "GET", "/callees") == {"+15550000000": "busy"}
    call = client.calls.create(to="+15550000000", from_=CALLER, twiml="<Response/>")
    detail = wait_call(emulator, call.sid)
    assert detail["status"] == "busy" and detail["callee"] == "busy"
    response = requests.post(
        emulator.base_url + "/_emulator/callees", json={"+15550000000": "sleepy"}, timeout=5
    )
    with response:
        assert response.status_code == 400 and "sleepy" in response.json()["error"]


def test_reset_forgets_everything(client: Client, emulator: RunningEmulator) -> None:
    control(emulator, "POST", "/callees", json={"+15550000000": "busy"})
    control(emulator, "POST", "/faults", json={"kind": "messages", "count": 5, "status": 500})
    client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>")
    control(emulator, "POST", "/reset")
    assert control(emulator, "GET", "/calls") == []
    assert control(emulator, "GET", "/requests") == []
    assert control(emulator, "GET", "/callees") == {}
    assert control(emulator, "GET", "/health")["active_calls"] == 0
    client.messages.create(to="+15550000000", from_=CALLER, body="no fault any more")


def test_calls_filtered_by_number(client: Client, emulator: RunningEmulator) -> None:
    first = client.calls.create(to="+15550000005", from_=CALLER, twiml="<Response/>")
    client.calls.create(to="+15550000015", from_=CALLER, twiml="<Response/>")
    assert [c["sid"] for c in control(emulator, "GET", "/calls?to=%2B15550000005")] == [first.sid]
    assert len(control(emulator, "GET", "/calls")) == 2


def test_inbound_call(emulator: RunningEmulator, service: ServiceStub) -> None:
    service.set("/voice/inbound", SCRIPT)
    service.set("/gather", THANKS)
    answer = control(
        emulator,
        "POST",
        "/inbound/call",
        json={"from": "+15550000123", "to": CALLER, "digits": "1"},
    )
    detail = wait_call(emulator, answer["sid"])
    assert detail["direction"] == "inbound" and detail["status"] == "completed"
    voice = service.wait_hits("/voice/inbound", 1, answer["sid"])[0]
    assert (
        voice.valid and voice.get("Direction") == "inbound" and voice.get("CallStatus") == "ringing"
    )
    assert voice.get("From") == "+15550000123" and voice.get("To") == CALLER
    gather = service.wait_hits("/gather", 1, answer["sid"])[0]
    assert gather.valid and gather.get("Digits") == "1"


def test_inbound_call_pressing_nothing_and_reject(
    emulator: RunningEmulator, service: ServiceStub
) -> None:
    service.set("/voice/inbound", SCRIPT)
    silent = control(emulator, "POST", "/inbound/call", json={"from": "+15550000123", "to": CALLER})
    assert wait_call(emulator, silent["sid"])["digits"] == []

    def reject(hit: Hit) -> str:
        return '<Response><Reject reason="busy"/></Response>'

    service.set("/voice/inbound", reject)
    rejected = control(
        emulator, "POST", "/inbound/call", json={"from": "+15550000123", "to": CALLER}
    )
    assert wait_call(emulator, rejected["sid"])["status"] == "busy"


def test_control_rejects_bad_input(emulator: RunningEmulator) -> None:
    for path, body in (
        ("/inbound/call", {"to": CALLER}),
        ("/inbound/call", {"from": "+15550000123", "to": CALLER, "digits": "x"}),
        ("/inbound/sms", {"from": "nope", "to": CALLER, "body": "x"}),
        ("/faults", {"kind": "calls", "count": 0, "status": 500}),
    ):
        response = requests.post(emulator.base_url + "/_emulator" + path, json=body, timeout=5)
        with response:
            assert response.status_code == 400, (path, response.text)
    response = requests.get(emulator.base_url + "/_emulator/calls/CAnope", timeout=5)
    with response:
        assert response.status_code == 404


def test_app_without_a_server() -> None:
    app = create_emulator_app(EmulatorSettings(ACCOUNT_SID, AUTH_TOKEN, time_scale=100))
    state = emulator_state(app)
    try:
        http = app.test_client()
        created = http.post(
            f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            data={"To": "+15550000000", "From": CALLER, "Body": "hi"},
            auth=(ACCOUNT_SID, AUTH_TOKEN),
        )
        assert created.status_code == 201
        sid = created.get_json()["sid"]
        assert state.wait_for(lambda: state.messages[sid].status == "delivered", 5)
        missing = http.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Nothing.json")
        assert missing.status_code == 404 and missing.get_json()["code"] == 20404
    finally:
        state.shutdown()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="callees"):
        create_emulator_app(EmulatorSettings(ACCOUNT_SID, AUTH_TOKEN, callees={"+1555": "sleepy"}))
    with pytest.raises(ValueError, match="time_scale"):
        create_emulator_app(EmulatorSettings(ACCOUNT_SID, AUTH_TOKEN, time_scale=0))


class _CountingRecords(GrowingRecords):
    """Counts what the emulator tells its heap policy, without freezing the test process."""

    def __init__(self) -> None:
        super().__init__(every=10**9)
        self.added_count = 0
        self.resets = 0

    def added(self) -> None:
        self.added_count += 1

    def forgotten(self) -> None:
        self.resets += 1


def test_a_served_emulator_tells_its_heap_of_each_request_and_each_reset(
    client: Client, emulator: RunningEmulator
) -> None:
    """The emulator in a process of its own freezes its records as they grow (robot/heap.py)."""
    records = _CountingRecords()
    emulator.state.heap = records
    client.messages.create(to="+8613800138000", from_="+15005550006", body="one")
    client.messages.create(to="+8613800138001", from_="+15005550006", body="two")
    assert records.added_count == len(control(emulator, "GET", "/requests")) == 2
    control(emulator, "POST", "/reset")
    assert records.resets == 1
