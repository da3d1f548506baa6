"""SMS: delivery and its callbacks, segments, and inbound texts through the control API."""

from __future__ import annotations

from twilio.rest import Client

from robot.emulator import RunningEmulator

from .support import ACCOUNT_SID, CALLER, ServiceStub, control, wait_until


def message_status(emulator: RunningEmulator, sid: str) -> dict[str, object]:
    detail: dict[str, object] = control(emulator, "GET", f"/messages/{sid}?wait=10")
    return detail


def test_sms_delivered(client: Client, emulator: RunningEmulator, service: ServiceStub) -> None:
    message = client.messages.create(
        to="+15550000000",
        from_=CALLER,
        body="Fraud warning: do not transfer money.",
        status_callback=service.url("/sms/status"),
        validity_period=600,
    )
    assert message.status == "queued" and message.sid.startswith("SM") and len(message.sid) == 34
    assert message.num_segments == "1" and message.direction == "outbound-api"
    assert message.date_created is not None and message.price is None
    hits = service.wait_hits("/sms/status", 2)
    assert all(h.valid for h in hits)
    assert [h.get("MessageStatus") for h in hits] == ["sent", "delivered"]
    assert [h.get("SmsStatus") for h in hits] == ["sent", "delivered"]
    for hit in hits:
        assert hit.get("MessageSid") == hit.get("SmsSid") == message.sid
        assert hit.get("AccountSid") == ACCOUNT_SID and hit.get("ApiVersion") == "2010-04-01"
        assert hit.get("From") == CALLER and hit.get("To") == "+15550000000"
        assert hit.get("ErrorCode") is None
    fetched = client.messages(message.sid).fetch()
    assert fetched.status == "delivered" and fetched.date_sent is not None
    detail = message_status(emulator, message.sid)
    assert detail["validity_period"] == 600
    assert [e["status"] for e in detail["events"]] == ["queued", "sent", "delivered"]  # type: ignore[attr-defined, index]


def test_sms_undelivered(client: Client, emulator: RunningEmulator, service: ServiceStub) -> None:
    message = client.messages.create(
        to="+15550000008",
        from_=CALLER,
        body="hi",
        status_callback=service.url("/sms/status"),
    )
    hits = service.wait_hits("/sms/status", 2)
    assert [h.get("MessageStatus") for h in hits] == ["sent", "undelivered"]
    assert hits[-1].get("ErrorCode") == "30003" and hits[-1].valid
    fetched = client.messages(message.sid).fetch()
    assert fetched.status == "undelivered" and fetched.error_code == 30003


def test_sms_segments(client: Client) -> None:
    assert (
        client.messages.create(to="+15550000000", from_=CALLER, body="a" * 161).num_segments == "2"
    )
    chinese = "您好，这是一条防诈骗提醒。" * 6  # 78 characters, UCS-2
    assert client.messages.create(to="+15550000000", from_=CALLER, body=chinese).num_segments == "2"
    assert (
        client.messages.create(to="+15550000000", from_=CALLER, body=chinese[:70]).num_segments
        == "1"
    )


def test_sms_through_a_messaging_service(
    client: Client, emulator: RunningEmulator, service: ServiceStub
) -> None:
    service_sid = "MG" + "1" * 32
    message = client.messages.create(
        to="+15550000000",
        messaging_service_sid=service_sid,
        body="hi",
        status_callback=service.url("/sms/status"),
    )
    assert message.status == "accepted" and message.messaging_service_sid == service_sid
    hits = service.wait_hits("/sms/status", 3)
    assert [h.get("MessageStatus") for h in hits] == ["queued", "sent", "delivered"]
    assert all(h.get("MessagingServiceSid") == service_sid for h in hits)


def test_inbound_sms(emulator: RunningEmulator, service: ServiceStub) -> None:
    service.set(
        "/sms/inbound",
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>收到，谢谢</Message></Response>',
    )
    answer = control(
        emulator,
        "POST",
        "/inbound/sms",
        json={"from": "+15550000000", "to": CALLER, "body": "STOP 停止"},
    )
    assert answer["status_code"] == 200 and "<Message>" in answer["body"]
    assert answer["replies"] == ["收到，谢谢"]
    hit = service.wait_hits("/sms/inbound", 1)[0]
    assert hit.valid
    assert hit.get("Body") == "STOP 停止" and hit.get("From") == "+15550000000"
    assert hit.get("To") == CALLER and hit.get("SmsStatus") == "received"
    assert hit.get("MessageSid") == hit.get("SmsSid") == answer["sid"]
    assert hit.get("NumMedia") == "0" and hit.get("NumSegments") == "1"
    assert hit.get("AccountSid") == ACCOUNT_SID and hit.get("ApiVersion") == "2010-04-01"
    messages = control(emulator, "GET", "/messages")
    assert [(m["direction"], m["status"]) for m in messages] == [
        ("inbound", "received"),
        ("outbound-reply", "sent"),
    ]


def test_inbound_sms_to_a_failing_service(emulator: RunningEmulator, service: ServiceStub) -> None:
    service.set("/sms/inbound", lambda hit: ("boom", 500))
    answer = control(
        emulator, "POST", "/inbound/sms", json={"from": "+15550000000", "to": CALLER, "body": "1"}
    )
    assert answer["status_code"] == 500 and answer["replies"] == []
    wait_until(lambda: len(control(emulator, "GET", "/messages")) == 1)
