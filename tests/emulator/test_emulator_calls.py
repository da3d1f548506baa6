"""Calls acted out: the last-digit table, TwiML, AMD, callbacks and updates."""

from __future__ import annotations

import io
import threading
import wave
from collections.abc import Callable

import pytest
from twilio.rest import Client

from robot.emulator import RunningEmulator

from .conftest import TIME_SCALE
from .support import (
    CALLER,
    SCRIPT,
    THANKS,
    Hit,
    ServiceStub,
    control,
    event_time,
    wait_call,
    wait_callbacks,
    wait_until,
)

ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


def place(client: Client, service: ServiceStub, to: str, **kwargs: object) -> str:
    """Place a call to ``to`` playing SCRIPT, with every status callback requested."""
    service.set("/voice", SCRIPT)
    service.set("/gather", THANKS)
    options: dict[str, object] = {
        "url": service.url("/voice"),
        "status_callback": service.url("/status"),
        "status_callback_event": ALL_EVENTS,
    }
    options.update(kwargs)
    call = client.calls.create(to=to, from_=CALLER, **options)
    assert call.status == "queued"
    return str(call.sid)


def statuses(service: ServiceStub, sid: str, count: int) -> list[Hit]:
    hits = service.wait_hits("/status", count, sid)
    assert all(h.valid for h in hits), "every status callback carries a valid signature"
    assert [h.get("SequenceNumber") for h in hits] == [str(i) for i in range(len(hits))]
    for hit in hits:
        assert hit.get("CallbackSource") == "call-progress-events"
        assert hit.get("Direction") == "outbound-api"
        assert hit.get("ApiVersion") == "2010-04-01"
        assert (hit.get("Timestamp") or "").endswith("+0000")
    return hits


def emulated(detail: dict[str, object], start: str, end: str) -> float:
    return (event_time(detail, end) - event_time(detail, start)) * TIME_SCALE  # type: ignore[arg-type]


@pytest.mark.parametrize(("digit", "pressed"), [("0", "1"), ("1", "2"), ("2", "3")])
def test_humans_press_their_key(
    client: Client, emulator: RunningEmulator, service: ServiceStub, digit: str, pressed: str
) -> None:
    sid = place(client, service, "+1555000000" + digit)
    detail = wait_call(emulator, sid)
    hits = statuses(service, sid, 4)
    assert [h.get("CallStatus") for h in hits] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    completed = hits[-1]
    assert completed.get("CallDuration") == detail["duration"] and int(detail["duration"]) > 3
    assert completed.get("SipResponseCode") == "200"
    voice = service.hits_for("/voice", sid)
    assert len(voice) == 1 and voice[0].valid and voice[0].get("CallStatus") == "in-progress"
    gather = service.hits_for("/gather", sid)
    assert [g.get("Digits") for g in gather] == [pressed] and gather[0].valid
    assert [d["digits"] for d in detail["digits"]] == [pressed]
    assert [d["kind"] for d in detail["documents"]] == ["twiml", "gather-action"]
    assert detail["documents"][1]["response_body"] == THANKS
    assert detail["documents"][1]["status_code"] == 200
    detail = wait_callbacks(emulator, sid, 4)
    assert [c["status_code"] for c in detail["callbacks"]] == [204, 204, 204, 204]
    assert [c["event"] for c in detail["callbacks"]] == ALL_EVENTS


@pytest.mark.time_scale(10)
def test_silent_human_falls_through(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    sid = place(client, service, "+15550000003")
    detail = wait_call(emulator, sid)
    assert detail["status"] == "completed"
    assert service.hits_for("/gather", sid) == []
    assert detail["digits"] == []
    # prompt (~4 s) + gather timeout 5 s + goodbye (~3 s)
    assert 10 <= int(detail["duration"]) <= 17


def test_hangup_callee(client: Client, emulator: RunningEmulator, service: ServiceStub) -> None:
    sid = place(client, service, "+15550000004")
    detail = wait_call(emulator, sid)
    assert detail["status"] == "completed"
    assert int(detail["duration"]) <= 3
    assert detail["events"][-1]["detail"] == "callee-hangup"
    assert service.hits_for("/gather", sid) == []
    assert statuses(service, sid, 4)[-1].get("CallDuration") == detail["duration"]


def test_no_answer_honours_timeout(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    sid = place(client, service, "+15550000005", timeout=12)
    detail = wait_call(emulator, sid)
    assert detail["status"] == "no-answer"
    assert 11.5 <= emulated(detail, "ringing", "no-answer") <= 16
    hits = statuses(service, sid, 3)
    assert [h.get("CallStatus") for h in hits] == ["initiated", "ringing", "no-answer"]
    assert hits[-1].get("SipResponseCode") == "487"
    assert service.hits_for("/voice", sid) == []
    assert client.calls(sid).fetch().duration == "0"


def test_busy(client: Client, emulator: RunningEmulator, service: ServiceStub) -> None:
    sid = place(client, service, "+15550000006")
    assert wait_call(emulator, sid)["status"] == "busy"
    hits = statuses(service, sid, 2)
    assert [h.get("CallStatus") for h in hits] == ["initiated", "busy"]
    assert hits[-1].get("SipResponseCode") == "486"


def test_unreachable_fails(client: Client, emulator: RunningEmulator, service: ServiceStub) -> None:
    sid = place(client, service, "+15550000008")
    detail = wait_call(emulator, sid)
    assert detail["status"] == "failed"
    hits = statuses(service, sid, 2)
    assert [h.get("CallStatus") for h in hits] == ["initiated", "failed"]
    assert hits[-1].get("SipResponseCode") == "480"
    assert hits[-1].get("ErrorCode") == "21214"
    assert client.calls(sid).fetch().status == "failed"


def test_long_ring_then_answer(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    sid = place(client, service, "+15550000009", timeout=30)
    detail = wait_call(emulator, sid)
    assert detail["status"] == "completed"
    assert 19.5 <= emulated(detail, "ringing", "in-progress") <= 24
    assert [g.get("Digits") for g in service.hits_for("/gather", sid)] == ["1"]


def test_long_ring_beyond_timeout_is_no_answer(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    sid = place(client, service, "+15550000009", timeout=15)
    assert wait_call(emulator, sid)["status"] == "no-answer"


def test_only_completed_callback_by_default(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    service.set("/voice", SCRIPT)
    call = client.calls.create(
        to="+15550000003",
        from_=CALLER,
        url=service.url("/voice"),
        status_callback=service.url("/status?case=42"),
    )
    wait_call(emulator, call.sid)
    hits = service.wait_hits("/status", 1, call.sid)
    assert len(hits) == 1 and hits[0].get("CallStatus") == "completed"
    assert hits[0].get("SequenceNumber") == "0"
    assert hits[0].url.endswith("/status?case=42") and hits[0].valid


def test_get_methods_are_signed_over_the_query(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    service.set(
        "/voice",
        '<Response><Gather action="/gather" method="GET"><Say>Hi</Say></Gather></Response>',
    )
    service.set("/gather", THANKS)
    call = client.calls.create(
        to="+15550000000",
        from_=CALLER,
        url=service.url("/voice?lang=zh"),
        method="GET",
        status_callback=service.url("/status"),
        status_callback_method="GET",
    )
    wait_call(emulator, call.sid)
    voice = service.wait_hits("/voice", 1, call.sid)[0]
    assert voice.method == "GET" and voice.valid and ("lang", "zh") in voice.query
    gather = service.wait_hits("/gather", 1, call.sid)[0]
    assert gather.method == "GET" and gather.valid and gather.get("Digits") == "1"
    status = service.wait_hits("/status", 1, call.sid)[0]
    assert status.method == "GET" and status.valid and status.get("CallStatus") == "completed"


def test_amd_async_voicemail(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    sid = place(
        client,
        service,
        "+15550000007",
        machine_detection="DetectMessageEnd",
        async_amd="true",
        async_amd_status_callback=service.url("/amd"),
    )
    amd = service.wait_hits("/amd", 1, sid)[0]
    assert amd.valid
    assert amd.get("AnsweredBy") == "machine_end_beep"
    assert amd.get("AccountSid") and amd.get("CallSid") == sid
    assert int(amd.get("MachineDetectionDuration") or 0) >= 5000
    detail = wait_call(emulator, sid)
    assert detail["status"] == "completed" and detail["answered_by"] == "machine_end_beep"
    assert detail["digits"] == []  # a machine presses nothing


def test_amd_async_human_and_enable_mode(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    human = place(
        client,
        service,
        "+15550000000",
        machine_detection="Enable",
        async_amd="true",
        async_amd_status_callback=service.url("/amd"),
    )
    machine = place(
        client,
        service,
        "+15550000017",
        machine_detection="Enable",
        async_amd="true",
        async_amd_status_callback=service.url("/amd"),
    )
    assert service.wait_hits("/amd", 1, human)[0].get("AnsweredBy") == "human"
    assert service.wait_hits("/amd", 1, machine)[0].get("AnsweredBy") == "machine_start"
    wait_call(emulator, human)
    wait_call(emulator, machine)


def test_amd_sync_puts_answered_by_in_the_twiml_request(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    human = place(client, service, "+15550000000", machine_detection="DetectMessageEnd")
    machine = place(client, service, "+15550000007", machine_detection="DetectMessageEnd")
    assert service.wait_hits("/voice", 1, human)[0].get("AnsweredBy") == "human"
    assert service.wait_hits("/voice", 1, machine)[0].get("AnsweredBy") == "machine_end_beep"
    assert wait_call(emulator, machine)["answered_by"] == "machine_end_beep"
    wait_call(emulator, human)


@pytest.mark.time_scale(10)
def test_voicemail_listens_to_an_updated_twiml(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    """The service's usual flow: async AMD says machine, it swaps in a voicemail message."""
    long_script = (
        "<Response><Gather action='/gather' timeout='10'><Say>"
        + "warning " * 20
        + "</Say></Gather></Response>"
    )
    service.set("/voice", long_script)

    def on_amd(hit: Hit) -> str:
        if (
            hit.get(
                "AnsweredBy",
            )
            == "machine_end_beep"
        ):
            client.calls(hit.get("CallSid")).update(
                twiml="<Response><Say>This is a voicemail warning.</Say><Hangup/></Response>"
            )
        return ""

    service.set("/amd", on_amd)
    call = client.calls.create(
        to="+15550000007",
        from_=CALLER,
        url=service.url("/voice"),
        machine_detection="DetectMessageEnd",
        async_amd="true",
        async_amd_status_callback=service.url("/amd"),
    )
    detail = wait_call(emulator, call.sid)
    assert detail["status"] == "completed"
    assert any(e["status"] == "redirected" for e in detail["events"])
    assert detail["events"][-1]["detail"] == "hangup"
    # greeting 6 s + the voicemail (~3 s), well before the first document would have ended
    assert int(detail["duration"]) < 12


def test_update_status_completed_hangs_up(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    service.set("/voice", "<Response><Pause length='300'/></Response>")
    call = client.calls.create(
        to="+15550000003",
        from_=CALLER,
        url=service.url("/voice"),
        status_callback=service.url("/status"),
    )
    service.wait_hits("/voice", 1, call.sid)
    updated = client.calls(call.sid).update(status="completed")
    assert updated.sid == call.sid
    detail = wait_call(emulator, call.sid, timeout=3)
    assert detail["status"] == "completed" and detail["events"][-1]["detail"] == "api"
    assert int(detail["duration"]) < 300
    assert service.wait_hits("/status", 1, call.sid)[0].get("CallStatus") == "completed"


def test_update_cancels_a_ringing_call(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    sid = place(client, service, "+15550000005", timeout=600)  # 12 s real: time to cancel
    wait_until(lambda: client.calls(sid).fetch().status == "ringing")
    client.calls(sid).update(status="canceled")
    detail = wait_call(emulator, sid, timeout=3)
    assert detail["status"] == "canceled"
    assert [h.get("CallStatus") for h in statuses(service, sid, 3)] == [
        "initiated",
        "ringing",
        "canceled",
    ]


def test_update_url_replaces_the_document(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    service.set("/voice", "<Response><Pause length='300'/></Response>")
    service.set("/other", "<Response><Say>Redirected.</Say></Response>")
    call = client.calls.create(to="+15550000003", from_=CALLER, url=service.url("/voice"))
    service.wait_hits("/voice", 1, call.sid)
    client.calls(call.sid).update(url=service.url("/other"))
    detail = wait_call(emulator, call.sid, timeout=3)
    assert [d["kind"] for d in detail["documents"]] == ["twiml", "update"]
    assert service.hits_for("/other", call.sid)[0].valid
    from twilio.base.exceptions import TwilioRestException

    with pytest.raises(TwilioRestException) as caught:
        client.calls(call.sid).update(url=service.url("/other"))
    assert caught.value.code == 21220


@pytest.mark.time_scale(10)
def test_twiml_verbs(client: Client, emulator: RunningEmulator, service: ServiceStub) -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00\x00" * 8000 * 8)  # 8 s
    service.files["/audio/warning.wav"] = (buffer.getvalue(), "audio/wav")
    service.set(
        "/voice/start",
        "<Response><Play>../audio/warning.wav</Play><Unknown/><Pause length='2'/>"
        "<Redirect>step2</Redirect><Say>never</Say></Response>",
    )
    service.set(
        "/voice/step2",
        "<Response><Gather numDigits='1' action='/menu'><Say>press</Say></Gather>"
        "<Say>fallthrough</Say></Response>",
    )

    def menu(hit: Hit) -> str:
        if hit.get("Digits") == "9":
            return "<Response><Gather numDigits='1' action='/menu2'><Play>/nowhere.mp3</Play></Gather></Response>"
        return "<Response><Hangup/></Response>"

    service.set("/menu", menu)
    service.set("/menu2", "<Response><Say>bye</Say><Hangup/><Say>never</Say></Response>")
    emulator_overrides = {"+15550004444": "human:9,1"}
    control(emulator, "POST", "/callees", json=emulator_overrides)
    call = client.calls.create(to="+15550004444", from_=CALLER, url=service.url("/voice/start"))
    detail = wait_call(emulator, call.sid)
    assert [d["digits"] for d in detail["digits"]] == ["9", "1"]
    assert [h.get("Digits") for h in service.hits_for("/menu", call.sid)] == ["9"]
    assert [h.get("Digits") for h in service.hits_for("/menu2", call.sid)] == ["1"]
    assert [d["kind"] for d in detail["documents"]] == [
        "twiml",
        "redirect",
        "gather-action",
        "gather-action",
    ]
    assert any(e["status"] == "skipped" for e in detail["events"])
    assert detail["events"][-1]["detail"] == "hangup"
    # ring-free part: 8 s audio + 2 s pause + ~1 s press + ~1 s key + 3 s default play + …
    # The top allows for the real time of the five document fetches: at 10x, 0.1 s of a busy
    # machine is 1 emulated second (at 50x, 27 was seen under load, and 71 with busy threads).
    assert 14 <= int(detail["duration"]) <= 40


def test_gather_action_on_empty_result(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    service.set(
        "/voice",
        "<Response><Gather actionOnEmptyResult='true' timeout='3' action='/empty'><Say>x</Say>"
        "</Gather><Say>not reached</Say></Response>",
    )
    service.set("/empty", "<Response><Hangup/></Response>")
    call = client.calls.create(to="+15550000003", from_=CALLER, url=service.url("/voice"))
    wait_call(emulator, call.sid)
    hit = service.wait_hits("/empty", 1, call.sid)[0]
    assert hit.get("Digits") is None and hit.valid


@pytest.mark.parametrize(
    ("dialled", "status"),
    [
        ("+15550000000", "completed"),
        ("+15550000006", "busy"),
        ("+15550000005", "no-answer"),
        ("+15550000008", "failed"),
    ],
)
def test_dial(
    client: Client, emulator: RunningEmulator, service: ServiceStub, dialled: str, status: str
) -> None:
    service.set(
        "/voice",
        f"<Response><Say>Connecting you</Say><Dial action='/dialed' timeout='10'>{dialled}</Dial>"
        "</Response>",
    )
    service.set("/dialed", "<Response><Say>Done</Say></Response>")
    call = client.calls.create(to="+15550000003", from_=CALLER, url=service.url("/voice"))
    detail = wait_call(emulator, call.sid)
    assert detail["status"] == "completed"
    hit = service.wait_hits("/dialed", 1, call.sid)[0]
    assert hit.valid and hit.get("DialCallStatus") == status
    child_sid = hit.get("DialCallSid")
    child = control(emulator, "GET", f"/calls/{child_sid}")
    assert child["parent_call_sid"] == call.sid and child["direction"] == "outbound-dial"
    assert child["status"] == status
    if status == "completed":
        assert hit.get("DialCallDuration") == "20"
    else:
        assert hit.get("DialCallDuration") is None


@pytest.mark.time_scale(10)
def test_dial_with_number_noun_without_action(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    service.set(
        "/voice",
        "<Response><Dial timeLimit='5'><Number>+15550000002</Number></Dial><Say>after</Say></Response>",
    )
    call = client.calls.create(to="+15550000003", from_=CALLER, url=service.url("/voice"))
    detail = wait_call(emulator, call.sid)
    children = client.calls.list(parent_call_sid=call.sid)
    assert len(children) == 1 and children[0].duration == "5"
    assert 9 <= int(detail["duration"]) <= 14  # setup 1 + ring 3 + talk 5 + "after" 1


def test_inline_twiml_and_time_limit(client: Client, emulator: RunningEmulator) -> None:
    call = client.calls.create(
        to="+15550000003",
        from_=CALLER,
        twiml="<Response><Pause length='100'/></Response>",
        time_limit=7,
    )
    detail = wait_call(emulator, call.sid)
    assert detail["status"] == "completed" and detail["duration"] == "7"
    assert detail["events"][-1]["detail"] == "time-limit"


def test_twiml_fetch_failure_ends_the_call(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    service.set("/voice", lambda hit: ("oops", 500))
    call = client.calls.create(to="+15550000000", from_=CALLER, url=service.url("/voice"))
    detail = wait_call(emulator, call.sid)
    assert detail["status"] == "completed" and detail["error_code"] == 11200
    service.set("/voice", "<html>not twiml</html>")
    call = client.calls.create(to="+15550000000", from_=CALLER, url=service.url("/voice"))
    assert wait_call(emulator, call.sid)["error_code"] == 12100


def test_callback_failures_are_recorded(client: Client, emulator: RunningEmulator) -> None:
    call = client.calls.create(
        to="+15550000006",
        from_=CALLER,
        twiml="<Response/>",
        status_callback="http://127.0.0.1:9/unreachable",
    )
    wait_call(emulator, call.sid)
    callback = wait_callbacks(emulator, call.sid, 1)["callbacks"][0]
    assert callback["status_code"] is None and callback["error"]


def test_many_concurrent_calls(
    make_emulator: Callable[..., RunningEmulator],
    make_client: Callable[..., Client],
    service: ServiceStub,
) -> None:
    emulator = make_emulator(time_scale=5)
    client = make_client(emulator)
    # Every answered call is held (a pause, then back to /voice) until all 300 are placed, so
    # the peak does not hang on how fast a loaded machine places them: CI once saw 149.
    released = threading.Event()
    hold = f'<Response><Pause length="50"/><Redirect>{service.url("/voice")}</Redirect></Response>'
    service.set("/voice", lambda hit: SCRIPT if released.is_set() else hold)
    service.set("/gather", THANKS)
    sids, peak = [], 0
    for i in range(300):
        call = client.calls.create(
            to=f"+1555000{i:04d}",
            from_=CALLER,
            url=service.url("/voice"),
            status_callback=service.url("/status"),
            timeout=20,
        )
        sids.append(call.sid)
        peak = max(peak, emulator.state.active_calls)
    released.set()
    assert peak >= 150  # hundreds of calls in flight at once
    assert emulator.state.wait_for(lambda: emulator.state.active_calls == 0, 30)
    service.wait_hits("/status", len(sids), timeout=30)
    by_status: dict[str, int] = {}
    for call in emulator.state.calls.values():
        if call.direction == "outbound-api":
            by_status[call.status] = by_status.get(call.status, 0) + 1
    assert by_status == {"completed": 180, "no-answer": 60, "busy": 30, "failed": 30}


def test_multi_digit_input_ends_at_the_finish_key(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    control(emulator, "POST", "/callees", json={"+15550005555": "human:123#"})
    service.set(
        "/voice", "<Response><Gather action='/digits'><Say>Your code?</Say></Gather></Response>"
    )
    service.set("/digits", THANKS)
    call = client.calls.create(to="+15550005555", from_=CALLER, url=service.url("/voice"))
    wait_call(emulator, call.sid)
    assert service.wait_hits("/digits", 1, call.sid)[0].get("Digits") == "123"
