"""What the robot says and texts: voice templates rendered for a case, as SMS text or speech."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from robot.config import Settings
from robot.models import Case, Contact
from robot.telephony.twiml import Speech
from robot.voice.templates import RenderedText, render


class Content:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @cached_property
    def _speaker(self) -> Any:
        from robot.voice.speech import Speaker

        return Speaker(self._settings.voice, self._settings.server.public_base_url)

    def text(
        self, kind: str, case: Case | None, contact: Contact | None = None, **extra: Any
    ) -> RenderedText:
        language = (case.language if case else None) or self._settings.voice.default_language
        context: dict[str, Any] = {"name": (case.name or "") if case else "", **extra}
        if contact is not None:
            # A relative hears the least that helps: no fraud details, only that they should call.
            context.update(relation=contact.relation, name="")
        fraud_type = case.fraud_type if case and contact is None else "other"
        return render(
            kind,
            fraud_type=fraud_type,
            language=language,
            context=context,
            settings=self._settings.voice,
            center=self._settings.center,
        )

    def say_attrs(self, language: str) -> dict[str, str]:
        attrs: dict[str, str] = self._speaker.say_attrs(language)
        return attrs

    def speech(
        self, kind: str, case: Case | None, contact: Contact | None = None, **extra: Any
    ) -> list[Speech]:
        rendered = self.text(kind, case, contact, **extra)
        return [
            Speech(v.tag, v.text_or_url, dict(v.attrs))
            for v in self._speaker.verbs(rendered.text, rendered.language)
        ]
