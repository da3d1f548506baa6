"""Render the warning scripts in ``voice_templates/<language>/<kind>.j2``.

Each language directory holds one template per kind and ``fraud/<fraud_type>.j2`` snippets that
name the danger of each fraud type (``fraud/generic.j2`` serves ``other`` and any type without
its own snippet). A kind missing in a language falls back to ``VoiceSettings.default_language``.

Context every template sees: center_name, official_number, emergency_number, fraud_type,
language, name, has_case, relation, and ``danger`` (the fraud snippet module, with ``label``,
``how``, ``rule`` and ``sms``). Undefined names raise (StrictUndefined).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

import robot
from robot.config import CenterSettings, VoiceSettings
from robot.voice.languages import LANGUAGES, center_name_for, normalize_language

__all__ = [
    "FRAUD_TYPES",
    "LANGUAGES",
    "PROMPT_KINDS",
    "SCRIPT_KINDS",
    "SMS_KINDS",
    "SPOKEN_KINDS",
    "TEMPLATE_KINDS",
    "RenderedText",
    "TemplateSet",
    "normalize_language",
    "render",
    "templates_root",
]

log = logging.getLogger(__name__)

#: Fraud type codes, as the intake and the case store use them.
FRAUD_TYPES: tuple[str, ...] = (
    "fake_investment",
    "task_rebate",
    "fake_loan",
    "fake_customer_service",
    "fake_police",
    "fake_credit",
    "fake_boss",
    "game_trading",
    "romance",
    "fake_shopping",
    "other",
)
#: The snippet used for ``other`` and for any type a language has no snippet for.
GENERIC_SNIPPET = "generic"

#: Every template kind the service renders.
TEMPLATE_KINDS: tuple[str, ...] = (
    "warning_sms",
    "warning_call",
    "voicemail",
    "relatives_notice",
    "follow_up_call",
    "inbound_greeting",
    "key_menu",
    "follow_up_menu",
    "already_paid",
    "goodbye",
    "confirmed_thanks",
    "connecting",
)
#: Sent as SMS: no links, only the official number, within the segment budget.
SMS_KINDS: frozenset[str] = frozenset({"warning_sms", "relatives_notice"})
#: Call scripts played before the key menu (about 40 seconds each).
SCRIPT_KINDS: tuple[str, ...] = ("warning_call", "voicemail", "follow_up_call", "inbound_greeting")
#: Short lines of the call flow.
PROMPT_KINDS: tuple[str, ...] = (
    "key_menu",
    "follow_up_menu",
    "already_paid",
    "goodbye",
    "confirmed_thanks",
    "connecting",
)
#: Everything that may be spoken, hence pre-rendered for offline mode. relatives_notice is
#: both an SMS and the text of a call to a relative.
SPOKEN_KINDS: tuple[str, ...] = (*SCRIPT_KINDS, *PROMPT_KINDS, "relatives_notice")


@dataclass(frozen=True)
class RenderedText:
    text: str
    #: The template language actually used (the default language after a fallback).
    language: str
    #: True when the requested language had no such template (or was not supported).
    fell_back: bool
    #: The template file used, relative to the templates directory, e.g. "zh-CN/warning_sms.j2".
    template: str = ""
    #: The fraud type code the text was rendered for (unknown codes become "other").
    fraud_type: str = ""


def templates_root(settings: VoiceSettings | None = None) -> Path:
    """``VoiceSettings.templates_dir`` if set, else the repository's ``voice_templates/``."""
    if settings is not None and settings.templates_dir:
        return Path(settings.templates_dir)
    return _default_root()


@functools.cache
def _default_root() -> Path:
    # Resolved once: resolving the path on each SMS was 2% of the worker while placing.
    return Path(robot.__file__).resolve().parent.parent / "voice_templates"


_CJK = "\u2e80-\u9fff\u3000-\u303f\uff00-\uffef"
_SPACE_BEFORE_CJK = re.compile(f" (?=[{_CJK}])")
_SPACE_AFTER_CJK = re.compile(f"(?<=[{_CJK}]) ")


def tidy(text: str) -> str:
    """One line of text: whitespace runs become one space, none next to Chinese characters.

    Templates are written over several lines; the joins must not become pauses or stray
    spaces in an SMS. A no-break space would reach Twilio as-is, so it is a plain space here.
    """
    flat = re.sub(r"\s+", " ", text.replace("\xa0", " ")).strip()
    return _SPACE_AFTER_CJK.sub("", _SPACE_BEFORE_CJK.sub("", flat))


class TemplateSet:
    """The templates of one directory; one Jinja environment per language."""

    def __init__(self, settings: VoiceSettings | None = None) -> None:
        self.settings = settings if settings is not None else VoiceSettings()
        self.root = templates_root(self.settings)
        default = normalize_language(self.settings.default_language)
        self.default_language = default if default is not None else LANGUAGES[0]
        self._envs: dict[str, Environment] = {}

    def environment(self, language: str) -> Environment:
        env = self._envs.get(language)
        if env is None:
            env = Environment(
                loader=FileSystemLoader(self.root / language),
                undefined=StrictUndefined,
                # Plain text: the TwiML builder escapes for XML. Line breaks around tags are
                # kept (tidy() joins lines), so "{% endif %}" at a line end still separates words.
                autoescape=False,
            )
            self._envs[language] = env
        return env

    def has_template(self, language: str, name: str) -> bool:
        return (self.root / language / name).is_file()

    def resolve(self, kind: str, language: str) -> tuple[str, bool]:
        """(language whose ``kind`` template is used, whether that is a fallback)."""
        wanted = normalize_language(language)
        if wanted is not None and self.has_template(wanted, f"{kind}.j2"):
            return wanted, False
        if self.has_template(self.default_language, f"{kind}.j2"):
            return self.default_language, True
        raise TemplateNotFound(f"{self.default_language}/{kind}.j2")

    def snippet_name(self, language: str, fraud_type: str) -> str | None:
        """The fraud snippet that ``fraud_type`` uses in ``language``, or None if there is none."""
        for code in (fraud_type, GENERIC_SNIPPET):
            name = f"fraud/{code}.j2"
            if code != "other" and self.has_template(language, name):
                return name
        return None

    def render(
        self,
        kind: str,
        *,
        fraud_type: str | None,
        language: str,
        context: Mapping[str, object],
        center: CenterSettings | None = None,
    ) -> RenderedText:
        if kind not in TEMPLATE_KINDS:
            raise ValueError(f"unknown template kind {kind!r}; expected one of {TEMPLATE_KINDS}")
        code = normalize_fraud_type(fraud_type)
        used, fell_back = self.resolve(kind, language)
        values: dict[str, Any] = {"name": "", "relation": "", "has_case": False}
        if center is not None:
            values.update(
                center_name=center_name_for(center, used),
                official_number=center.official_number,
                emergency_number=center.emergency_number,
            )
        values.update(context)
        values.update(language=used, fraud_type=code)
        env = self.environment(used)
        snippet = self.snippet_name(used, code)
        if snippet is None:
            values["danger"] = env.undefined(
                hint=f"{used}/fraud/{GENERIC_SNIPPET}.j2 is missing", name="danger"
            )
        else:
            values["danger"] = env.get_template(snippet).make_module(values)
        text = tidy(env.get_template(f"{kind}.j2").render(values))
        return RenderedText(text, used, fell_back, f"{used}/{kind}.j2", code)


def normalize_fraud_type(fraud_type: str | None) -> str:
    """The fraud type code; a missing or unknown one is treated as ``other`` (unknown ones are
    logged). A warning must go out even if an upstream system invents a category.
    """
    code = (fraud_type or "other").strip().lower()
    if code in FRAUD_TYPES:
        return code
    log.warning("unknown fraud type %r: using the generic script", fraud_type)
    return "other"


_SETS: dict[tuple[str, str], TemplateSet] = {}


def template_set(settings: VoiceSettings | None = None) -> TemplateSet:
    """A shared TemplateSet for these settings (Jinja reloads files that change on disk)."""
    settings = settings if settings is not None else VoiceSettings()
    key = (str(templates_root(settings)), settings.default_language)
    found = _SETS.get(key)
    if found is None:
        found = _SETS[key] = TemplateSet(settings)
    return found


def render(
    kind: str,
    *,
    fraud_type: str | None,
    language: str,
    context: Mapping[str, object],
    settings: VoiceSettings | None = None,
    center: CenterSettings | None = None,
) -> RenderedText:
    """Render one template kind for a fraud type in a language (any tag normalize_language reads).

    ``settings`` selects the templates directory and default language (defaults when None).
    ``center`` fills center_name (in the language actually used), official_number and
    emergency_number; keys in ``context`` win over it. name, relation and has_case default to
    "", "" and False.
    """
    return template_set(settings).render(
        kind, fraud_type=fraud_type, language=language, context=context, center=center
    )
