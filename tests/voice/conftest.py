"""Fixtures for the voice tests: settings with a private cache, a copy of the templates."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from robot.config import CenterSettings, Settings, VoiceSettings
from robot.voice.templates import templates_root


@pytest.fixture
def center() -> CenterSettings:
    return CenterSettings()


@pytest.fixture
def voice_settings(tmp_path: Path) -> VoiceSettings:
    return VoiceSettings(cache_dir=str(tmp_path / "voice-cache"))


@pytest.fixture
def app_settings(voice_settings: VoiceSettings) -> Settings:
    """Whole-service settings for the CLI (no database needed)."""
    return replace(Settings(), voice=voice_settings)


@pytest.fixture
def templates_copy(tmp_path: Path) -> Path:
    """A copy of the shipped templates to break."""
    target = tmp_path / "templates"
    shutil.copytree(templates_root(), target)
    return target


@pytest.fixture
def tiny_templates(tmp_path: Path) -> Path:
    """Every kind in every language says only the center's name: two texts to pre-render."""
    root = tmp_path / "tiny-templates"
    from robot.voice.languages import LANGUAGES
    from robot.voice.templates import TEMPLATE_KINDS

    for language in LANGUAGES:
        (root / language / "fraud").mkdir(parents=True)
        (root / language / "fraud" / "generic.j2").write_text(
            '{% set label = "x" %}{% set how = "x" %}{% set rule = "x" %}{% set sms = "x" %}',
            encoding="utf-8",
        )
        for kind in TEMPLATE_KINDS:
            (root / language / f"{kind}.j2").write_text("{{ center_name }}。", encoding="utf-8")
    return root
