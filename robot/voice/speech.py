"""Turn a script into TwiML verbs: ``<Say>`` by Twilio's voices, or ``<Play>`` of our own audio.

In ``offline`` mode a text is played from the audio cache only if it was rendered beforehand
(``prerender_all``); a miss falls back to ``<Say>`` at once, because rendering inside a
webhook request would keep the caller listening to silence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from robot.config import VoiceSettings
from robot.voice.languages import LANGUAGES, normalize_language, spec_for
from robot.voice.offline import (
    AudioCache,
    CacheReport,
    OfflineVoice,
    RenderError,
    RenderJob,
    audio_digest,
    run_jobs,
)

log = logging.getLogger(__name__)

V = TypeVar("V")


@dataclass(frozen=True)
class Verb:
    """One TwiML verb: ``<Say attrs>text</Say>`` or ``<Play attrs>url</Play>``."""

    tag: Literal["Say", "Play"]
    text_or_url: str
    attrs: dict[str, str] = field(default_factory=dict)


class Speaker:
    def __init__(self, settings: VoiceSettings, public_base_url: str) -> None:
        self.settings = settings
        self.public_base_url = public_base_url.rstrip("/")
        self.cache = AudioCache(Path(settings.cache_dir))
        default = normalize_language(settings.default_language)
        self.default_language = default if default is not None else LANGUAGES[0]

    def language(self, language: str) -> str:
        """The template language for a tag; unsupported tags get the default language."""
        tag = normalize_language(language)
        return tag if tag is not None else self.default_language

    def say_attrs(self, language: str) -> dict[str, str]:
        """``voice`` and ``language`` for <Say>; a setting of "" leaves the attribute out."""
        tag = self.language(language)
        spec = spec_for(tag)
        voice = _per_language(self.settings.say_voices).get(tag, spec.say_voice)
        say_language = _per_language(self.settings.say_languages).get(tag, spec.say_language)
        attrs = {"voice": voice, "language": say_language}
        return {key: value for key, value in attrs.items() if value}

    def offline_voice(self, language: str) -> OfflineVoice:
        tag = self.language(language)
        voice = _per_language(self.settings.offline_voices).get(tag, spec_for(tag).espeak_voice)
        rate = _per_language(self.settings.offline_rates).get(tag, self.settings.offline_rate)
        return OfflineVoice(voice, rate)

    def digest(self, text: str, language: str) -> str:
        return audio_digest(text, self.offline_voice(language))

    def lookup(self, text: str, language: str) -> Path | None:
        """The cached audio of ``text``, or None if it has not been rendered. Never renders."""
        return self.cache.lookup(self.digest(text, language))

    def audio_url(self, text: str, language: str) -> str | None:
        digest = self.digest(text, language)
        if self.cache.lookup(digest) is None:
            return None
        return f"{self.public_base_url}/voice/audio/{digest}.wav"

    def verbs(self, text: str, language: str) -> list[Verb]:
        """The verbs that speak ``text``; empty for blank text."""
        if not text.strip():
            return []
        if self.settings.mode == "offline":
            url = self.audio_url(text, language)
            if url is not None:
                return [Verb("Play", url, {})]
            log.warning("no pre-rendered audio for a %s text: using <Say>", self.language(language))
        return [Verb("Say", text, self.say_attrs(language))]

    def render_wav(self, text: str, language: str, path: Path) -> Path:
        """Render ``text`` offline to a telephony WAV at ``path`` (not the cache); blocks."""
        path = Path(path)
        [error] = run_jobs([RenderJob(text, self.offline_voice(language), path.resolve())])
        if error is not None:
            raise RenderError(error)
        return path

    def render_to_cache(self, items: Iterable[tuple[str, str]]) -> CacheReport:
        """Render the (text, language) pairs missing from the cache; blocks."""
        return self.cache.fill([(text, self.offline_voice(lang)) for text, lang in items])


def _per_language(mapping: Mapping[str, V]) -> dict[str, V]:
    """A settings table keyed by any spelling of a language tag, keyed by template language."""
    out: dict[str, V] = {}
    for key, value in mapping.items():
        tag = normalize_language(key)
        if tag is not None:
            out[tag] = value
    return out
