"""Real audio through pyttsx3 and espeak-ng, and the resampler under it."""

from __future__ import annotations

import math
import wave
from dataclasses import replace
from pathlib import Path

import pytest

from robot.config import CenterSettings, VoiceSettings
from robot.voice.offline import RenderError
from robot.voice.pcm import read_wav, resample
from robot.voice.speech import Speaker
from robot.voice.templates import render


def _wav_info(path: Path) -> tuple[int, int, int, int]:
    with wave.open(str(path), "rb") as reader:
        return (
            reader.getframerate(),
            reader.getnchannels(),
            reader.getsampwidth(),
            reader.getnframes(),
        )


def _rms(samples: list[float]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def test_it_renders_telephony_wav_whose_length_grows_with_the_text(
    voice_settings: VoiceSettings, tmp_path: Path
) -> None:
    speaker = Speaker(voice_settings, "")
    short = speaker.render_wav("Do not pay.", "en", tmp_path / "short.wav")
    long = speaker.render_wav(
        "Do not pay. Real police never ask you to move money to a safe account.",
        "en",
        tmp_path / "long.wav",
    )
    rate, channels, width, short_frames = _wav_info(short)
    assert (rate, channels, width) == (8000, 1, 2)
    long_frames = _wav_info(long)[3]
    assert 0.3 * 8000 < short_frames < long_frames
    samples, _ = read_wav(long)
    assert _rms([float(s) for s in samples]) > 500  # speech, not silence


@pytest.mark.parametrize("language", ["zh-CN", "en-US"])
def test_it_renders_a_whole_warning_call(
    language: str, voice_settings: VoiceSettings, tmp_path: Path
) -> None:
    text = render(
        "warning_call",
        fraud_type="fake_investment",
        language=language,
        context={},
        center=CenterSettings(),
    ).text
    path = Speaker(voice_settings, "").render_wav(text, language, tmp_path / "call.wav")
    rate, channels, width, frames = _wav_info(path)
    assert (rate, channels, width) == (8000, 1, 2)
    assert 20 < frames / rate < 90


def test_an_unknown_espeak_voice_is_an_error(voice_settings: VoiceSettings, tmp_path: Path) -> None:
    settings = replace(voice_settings, offline_voices={"en": "no-such-voice"})
    with pytest.raises(RenderError, match="no voice 'no-such-voice'"):
        Speaker(settings, "").render_wav("Hello", "en", tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize(
    ("frequency", "low_db", "high_db"),
    [
        (300, -0.5, 0.5),
        (1000, -0.5, 0.5),
        (3000, -0.5, 0.5),
        (3400, -3.0, 0.5),  # the top of the telephone band is still there
        (4500, -200.0, -40.0),  # would alias to 3.5 kHz: filtered out
        (5000, -200.0, -40.0),  # would alias to 3 kHz
        (10000, -200.0, -40.0),
    ],
)
def test_resampling_keeps_the_voice_band_and_stops_aliases(
    frequency: int, low_db: float, high_db: float
) -> None:
    source = [math.sin(2 * math.pi * frequency * n / 22050) for n in range(22050 // 2)]
    out = resample(source, 22050, 8000)
    assert len(out) == 4000
    gain_db = 20 * math.log10(max(_rms(out[100:-100]) / _rms(source), 1e-12))
    assert low_db <= gain_db <= high_db


def test_resampling_edge_cases() -> None:
    assert resample([], 22050, 8000) == []
    assert resample([1, 2, 3], 8000, 8000) == [1.0, 2.0, 3.0]
    assert len(resample([0.0] * 8000, 8000, 16000)) == 16000
    with pytest.raises(ValueError):
        resample([1.0], 0, 8000)
