"""The call's TwiML in both speech modes: <Say> in the template's language, or <Play> of our audio."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from robot.app import create_app
from robot.config import Settings
from robot.models import Attempt, Case, utcnow
from robot.sources import add_source
from robot.telephony.content import Content
from robot.voice.speech import Speaker

PUBLIC = "http://127.0.0.1:8000"


def make_attempt(sessions: sessionmaker[Session], language: str) -> tuple[Case, Attempt]:
    now = utcnow()
    with sessions.begin() as session:
        source = add_source(session, "feed").source
        case = Case(
            source_id=source.id,
            phone="+8613800138000",
            risk="high",
            fraud_type="fake_investment",
            language=language,
            opened_at=now,
            updated_at=now,
        )
        session.add(case)
        session.flush()
        attempt = Attempt(
            case_id=case.id,
            channel="call",
            purpose="warning",
            to_phone=case.phone,
            template="warning_call",
            due_at=now,
        )
        session.add(attempt)
        session.flush()
        session.expunge_all()
    return case, attempt


def fetch_twiml(client: FlaskClient, settings: Settings, code: str) -> str:
    url = f"{PUBLIC}/twilio/call/{code}/twiml?round=1"
    params = {"CallSid": "CA" + "2" * 32}
    signature = RequestValidator(settings.twilio.auth_token).compute_signature(url, params)
    response = client.post(
        url.removeprefix(PUBLIC), data=params, headers={"X-Twilio-Signature": signature}
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("language", "say_language", "voice"),
    [("zh-CN", "cmn-CN", "Polly.Zhiyu"), ("en", "en-US", "Polly.Joanna")],
)
def test_say_mode_speaks_in_the_templates_language_then_the_menu(
    app: Flask,
    settings: Settings,
    sessions: sessionmaker[Session],
    language: str,
    say_language: str,
    voice: str,
) -> None:
    _, attempt = make_attempt(sessions, language)
    twiml = fetch_twiml(app.test_client(), settings, attempt.code)
    says = re.findall(r"<Say ([^>]*)>([^<]*)</Say>", twiml)
    assert len(says) == 2  # the warning, then the key menu, inside the Gather
    for attrs, _text in says:
        assert f'language="{say_language}"' in attrs and f'voice="{voice}"' in attrs
    assert "1" in says[1][1] and "9" in says[1][1]
    assert twiml.index("<Gather") < twiml.index("<Say") and twiml.index("</Gather>") < twiml.index(
        "<Redirect"
    )


def test_offline_mode_plays_our_rendered_audio_then_the_menu(
    settings: Settings, engine: Any, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    settings = replace(
        settings,
        server=replace(settings.server, public_base_url=PUBLIC),
        voice=replace(settings.voice, mode="offline", cache_dir=str(tmp_path / "audio")),
    )
    app = create_app(settings, engine=engine)
    case, attempt = make_attempt(sessions, "en-US")
    content = Content(settings)
    script = content.text("warning_call", case).text
    # Only the script is rendered: the menu must fall back to <Say> rather than fail the call.
    Speaker(settings.voice, PUBLIC).render_to_cache([(script, "en-US")])
    client = app.test_client()
    twiml = fetch_twiml(client, settings, attempt.code)
    plays = re.findall(r"<Play>([^<]*)</Play>", twiml)
    assert len(plays) == 1 and plays[0].startswith(f"{PUBLIC}/voice/audio/")
    assert twiml.index("<Play>") < twiml.index("<Say")  # the script, then the menu by <Say>
    with client.get(plays[0].removeprefix(PUBLIC)) as audio:
        assert audio.status_code == 200
        assert audio.data[:4] == b"RIFF" and audio.data[8:12] == b"WAVE"
