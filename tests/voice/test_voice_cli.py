from __future__ import annotations

import wave
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner

from robot.config import Settings
from robot.voice.cli import voice


def test_lint_passes_on_the_shipped_templates(app_settings: Settings) -> None:
    result = CliRunner().invoke(voice, ["lint", "--strict"], obj=app_settings)
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


def test_lint_fails_and_names_the_template(app_settings: Settings, templates_copy: Path) -> None:
    sms = templates_copy / "en-US" / "warning_sms.j2"
    sms.write_text(sms.read_text(encoding="utf-8") + " http://evil.example", encoding="utf-8")
    settings = replace(
        app_settings, voice=replace(app_settings.voice, templates_dir=str(templates_copy))
    )
    result = CliRunner().invoke(voice, ["lint"], obj=settings)
    assert result.exit_code == 1
    assert "ERROR en-US/warning_sms.j2: contains a link" in result.output


def test_lint_strict_fails_on_a_missing_translation(
    app_settings: Settings, templates_copy: Path
) -> None:
    (templates_copy / "en-US" / "goodbye.j2").unlink()
    settings = replace(
        app_settings, voice=replace(app_settings.voice, templates_dir=str(templates_copy))
    )
    lenient = CliRunner().invoke(voice, ["lint"], obj=settings)
    assert lenient.exit_code == 0
    assert "WARNING en-US/goodbye.j2: missing: falls back to zh-CN" in lenient.output
    assert CliRunner().invoke(voice, ["lint", "--strict"], obj=settings).exit_code == 1


def test_preview_writes_a_wav(app_settings: Settings, tmp_path: Path) -> None:
    output = tmp_path / "preview.wav"
    result = CliRunner().invoke(
        voice,
        [
            "preview",
            "warning_call",
            "--fraud-type",
            "fake_police",
            "--lang",
            "zh",
            "--output",
            str(output),
        ],
        obj=app_settings,
    )
    assert result.exit_code == 0, result.output
    assert "冒充公检法" in result.output
    with wave.open(str(output), "rb") as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (8000, 1, 2)
        assert reader.getnframes() > 8000


def test_preview_rejects_an_unsupported_language(app_settings: Settings, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        voice,
        ["preview", "goodbye", "--lang", "fr", "--output", str(tmp_path / "x.wav")],
        obj=app_settings,
    )
    assert result.exit_code == 2
    assert "not a supported language" in result.output


def test_render_fills_the_cache(app_settings: Settings, tiny_templates: Path) -> None:
    settings = replace(
        app_settings, voice=replace(app_settings.voice, templates_dir=str(tiny_templates))
    )
    result = CliRunner().invoke(voice, ["render"], obj=settings)
    assert result.exit_code == 0, result.output
    assert "2 rendered, 0 already cached, 0 failed" in result.output
    assert len(list(Path(settings.voice.cache_dir).glob("*.wav"))) == 2
