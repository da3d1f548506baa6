"""Speaker in both modes, the audio cache and the blueprint that serves it."""

from __future__ import annotations

import json
import wave
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask

from robot.config import CenterSettings, VoiceSettings
from robot.voice import offline
from robot.voice.audio import bp, create_audio_blueprint
from robot.voice.offline import OfflineVoice, audio_digest
from robot.voice.prerender import prerender_all
from robot.voice.speech import Speaker, Verb
from robot.voice.templates import render

BASE = "https://robot.example.org"


def _fake_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(b"\x00\x00" * 80)


def test_say_mode_speaks_with_a_voice_per_language(voice_settings: VoiceSettings) -> None:
    speaker = Speaker(voice_settings, BASE)
    assert speaker.verbs("您好", "zh") == [
        Verb("Say", "您好", {"voice": "Polly.Zhiyu", "language": "cmn-CN"})
    ]
    assert speaker.verbs("Hello", "en-GB") == [
        Verb("Say", "Hello", {"voice": "Polly.Joanna", "language": "en-US"})
    ]
    # An unsupported tag is spoken in the default language's voice.
    assert speaker.verbs("您好", "fr")[0].attrs["language"] == "cmn-CN"
    assert speaker.verbs("  ", "zh") == []


def test_say_voices_are_settings(voice_settings: VoiceSettings) -> None:
    settings = replace(
        voice_settings,
        say_voices={"zh": "Google.cmn-CN-Standard-A", "en-US": ""},
        say_languages={"zh-Hans": "zh-CN"},
    )
    speaker = Speaker(settings, BASE)
    assert speaker.say_attrs("zh-CN") == {"voice": "Google.cmn-CN-Standard-A", "language": "zh-CN"}
    # "" leaves the voice to Twilio's default; languages not configured keep the built-in.
    assert speaker.say_attrs("en") == {"language": "en-US"}


def test_offline_mode_falls_back_to_say_on_a_cache_miss(voice_settings: VoiceSettings) -> None:
    speaker = Speaker(replace(voice_settings, mode="offline"), BASE + "/")
    [verb] = speaker.verbs("Hello", "en")
    assert verb == Verb("Say", "Hello", {"voice": "Polly.Joanna", "language": "en-US"})
    assert speaker.lookup("Hello", "en") is None


def test_offline_mode_plays_cached_audio(voice_settings: VoiceSettings) -> None:
    speaker = Speaker(replace(voice_settings, mode="offline"), BASE + "/")
    digest = speaker.digest("Hello", "en")
    _fake_wav(Path(voice_settings.cache_dir) / f"{digest}.wav")
    assert speaker.verbs("Hello", "en") == [Verb("Play", f"{BASE}/voice/audio/{digest}.wav", {})]
    # The same text in another voice is another file.
    assert speaker.lookup("Hello", "zh") is None


def test_the_digest_covers_text_and_voice() -> None:
    voice = OfflineVoice("en-us", 160)
    digest = audio_digest("Hello", voice)
    assert len(digest) == 64 and digest == audio_digest("Hello", voice)
    assert digest != audio_digest("Hello!", voice)
    assert digest != audio_digest("Hello", OfflineVoice("en-us", 170))
    assert digest != audio_digest("Hello", OfflineVoice("cmn", 160))


def test_the_offline_voice_and_rate_follow_the_settings(voice_settings: VoiceSettings) -> None:
    speaker = Speaker(voice_settings, BASE)
    assert speaker.offline_voice("zh") == OfflineVoice("cmn", 200)
    assert speaker.offline_voice("en") == OfflineVoice("en-us", 160)
    custom = Speaker(replace(voice_settings, offline_voices={"en": "en-gb"}, offline_rate=150), "")
    assert custom.offline_voice("en-US") == OfflineVoice("en-gb", 150)


# --- blueprint ------------------------------------------------------------------------------


@pytest.fixture
def cached(voice_settings: VoiceSettings) -> tuple[str, bytes]:
    digest = "ab" * 32
    path = Path(voice_settings.cache_dir) / f"{digest}.wav"
    _fake_wav(path)
    return digest, path.read_bytes()


def test_the_blueprint_serves_cached_audio(
    voice_settings: VoiceSettings, cached: tuple[str, bytes]
) -> None:
    app = Flask(__name__)
    app.register_blueprint(create_audio_blueprint(voice_settings.cache_dir))
    client = app.test_client()
    digest, body = cached
    with client.get(f"/voice/audio/{digest}.wav") as response:
        assert response.status_code == 200
        assert response.mimetype == "audio/wav"
        assert response.data == body
        assert "immutable" in response.headers["Cache-Control"]
    with client.head(f"/voice/audio/{digest}.wav") as response:
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "ours"),
    [
        ("/voice/audio/" + "cd" * 32 + ".wav", True),  # well-formed, not cached
        ("/voice/audio/" + "AB" * 32 + ".wav", True),  # upper case is not a digest we write
        ("/voice/audio/abc.wav", True),
        ("/voice/audio/%2e%2e.wav", True),
        ("/voice/audio/" + "ab" * 32 + ".mp3", False),
        # Slashes (encoded or not) never reach the view: the route takes one path segment.
        ("/voice/audio/..%2F..%2Fetc%2Fpasswd.wav", False),
        ("/voice/audio/../../etc/passwd", False),
    ],
)
def test_the_blueprint_answers_404_for_anything_else(
    voice_settings: VoiceSettings, cached: tuple[str, bytes], path: str, ours: bool
) -> None:
    app = Flask(__name__)
    app.register_blueprint(create_audio_blueprint(voice_settings.cache_dir))
    with app.test_client().get(path) as response:
        assert response.status_code == 404
        if ours:
            expected = {"error": "not_found", "message": "no audio with this id"}
            assert response.get_json() == expected


def test_the_default_blueprint_reads_the_app_settings(
    voice_settings: VoiceSettings, cached: tuple[str, bytes]
) -> None:
    app = Flask(__name__)
    app.extensions["robot"] = SimpleNamespace(settings=SimpleNamespace(voice=voice_settings))
    app.register_blueprint(bp)
    digest, body = cached
    with app.test_client().get(f"/voice/audio/{digest}.wav") as response:
        assert response.data == body


def test_a_relative_cache_dir_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    digest = "ef" * 32
    _fake_wav(tmp_path / "var" / "cache" / f"{digest}.wav")
    app = Flask(__name__)
    app.register_blueprint(create_audio_blueprint("var/cache"))
    with app.test_client().get(f"/voice/audio/{digest}.wav") as response:
        assert response.status_code == 200


# --- pre-rendering (real espeak-ng, on templates that say very little) ----------------------


def test_prerender_does_nothing_in_say_mode(
    voice_settings: VoiceSettings, tiny_templates: Path
) -> None:
    settings = replace(voice_settings, templates_dir=str(tiny_templates))
    report = prerender_all(settings, CenterSettings())
    assert (report.rendered, report.cached, report.failed) == (0, 0, [])
    assert not Path(settings.cache_dir).exists()


def test_prerender_fills_the_cache_the_call_flow_reads(
    voice_settings: VoiceSettings, tiny_templates: Path
) -> None:
    settings = replace(voice_settings, mode="offline", templates_dir=str(tiny_templates))
    center = CenterSettings()
    report = prerender_all(settings, center, public_base_url=BASE)
    assert report.ok, report.failed
    assert (report.rendered, report.cached) == (2, 0)  # one text per language

    # What the call flow renders for a real case (a name included) is found by hash.
    speaker = Speaker(settings, BASE)
    for language in ("zh-CN", "en-US"):
        rendered = render(
            "warning_call",
            fraud_type="fake_police",
            language=language,
            context={"name": "张三", "has_case": True},
            settings=settings,
            center=center,
        )
        [verb] = speaker.verbs(rendered.text, rendered.language)
        assert verb.tag == "Play"
        path = speaker.lookup(rendered.text, rendered.language)
        assert path is not None
        note = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        assert note["text"] == rendered.text

    again = prerender_all(settings, center)
    assert (again.rendered, again.cached) == (0, 2)


def test_a_cache_hit_does_not_render_again(
    voice_settings: VoiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    speaker = Speaker(voice_settings, BASE)
    first = speaker.render_to_cache([("Stop. Do not pay.", "en")])
    assert (first.rendered, first.cached) == (1, 0)
    path = speaker.lookup("Stop. Do not pay.", "en")
    assert path is not None
    stat = path.stat()

    def no_rendering(*args: object, **kwargs: object) -> list[str | None]:
        raise AssertionError("rendered a cached text")

    monkeypatch.setattr(offline, "run_jobs", no_rendering)
    second = speaker.render_to_cache([("Stop. Do not pay.", "en")])
    assert (second.rendered, second.cached) == (0, 1)
    assert speaker.lookup("Stop. Do not pay.", "en") == path
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
