"""Check every template for every language and fraud type before a person ever hears it.

Errors: a template that does not render (syntax, undefined variable), a link or a phone number
other than the center's own in any text, an SMS over the segment budget, a call script over
its spoken-time budget, a call script that does not name the center and its official number
up front or lacks the negative assurances, an "already paid" line without the emergency
number, a key menu without keys 1, 2, 3 and 9, a relatives notice that varies with the fraud
type (it would leak the fraud details), a missing template in the default language.
Warnings (errors with ``strict``): a missing translation (falls back to the default language),
a fraud type without its own danger snippet, a spoken text that depends on the person's name
(it cannot be pre-rendered), a stray template file or language directory.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from jinja2 import TemplateError, TemplateSyntaxError

from robot.config import CenterSettings, Settings, VoiceSettings
from robot.voice.checks import estimate_seconds, find_links, find_phone_numbers
from robot.voice.languages import LANGUAGES, center_name_for, normalize_language, spec_for
from robot.voice.sms import sms_size
from robot.voice.templates import (
    FRAUD_TYPES,
    GENERIC_SNIPPET,
    PROMPT_KINDS,
    SCRIPT_KINDS,
    SMS_KINDS,
    SPOKEN_KINDS,
    TEMPLATE_KINDS,
    TemplateSet,
)

ERROR = "error"
WARNING = "warning"

#: Sample values for the optional context variables, per language; lint renders with and
#: without them. Long-ish on purpose: SMS budgets must hold for real names too.
SAMPLE_NAMES = {"zh-CN": "欧阳明月", "en-US": "Alexandra Johnson"}
SAMPLE_RELATIONS = {"zh-CN": "guard", "en-US": "community"}


@dataclass(frozen=True)
class Problem:
    #: Template file relative to the templates directory ("zh-CN/warning_sms.j2"), or
    #: "(settings)" for a bad VoiceSettings value.
    template: str
    language: str
    #: The fraud type the problem shows up with; None when it does not depend on one.
    fraud_type: str | None
    severity: str
    message: str

    def __str__(self) -> str:
        where = self.template + (f" [{self.fraud_type}]" if self.fraud_type else "")
        return f"{self.severity.upper()} {where}: {self.message}"


@dataclass(frozen=True)
class _Variant:
    name: str
    relation: str
    has_case: bool

    def describe(self) -> str:
        parts = [f"{key}={value!r}" for key, value in vars(self).items() if value]
        return f" (with {', '.join(parts)})" if parts else ""


def lint(
    settings: VoiceSettings | Settings,
    center: CenterSettings | None = None,
    strict: bool = False,
) -> list[Problem]:
    """All problems of the templates under ``settings``; with ``strict`` warnings are errors."""
    if isinstance(settings, Settings):
        center = center if center is not None else settings.center
        settings = settings.voice
    center = center if center is not None else CenterSettings()
    problems: list[Problem] = []
    seen: set[Problem] = set()
    for problem in itertools.chain(
        _settings_problems(settings),
        _coverage_problems(TemplateSet(settings)),
        _render_problems(TemplateSet(settings), settings, center),
    ):
        if strict and problem.severity == WARNING:
            problem = replace(problem, severity=ERROR)
        if problem not in seen:
            seen.add(problem)
            problems.append(problem)
    return problems


def has_errors(problems: list[Problem]) -> bool:
    return any(problem.severity == ERROR for problem in problems)


# --- settings and files ---------------------------------------------------------------------


def _settings_problems(settings: VoiceSettings) -> Iterator[Problem]:
    def bad(message: str) -> Problem:
        return Problem("(settings)", "", None, ERROR, message)

    if settings.mode not in ("say", "offline"):
        yield bad(f"voice.mode must be 'say' or 'offline', not {settings.mode!r}")
    if normalize_language(settings.default_language) is None:
        yield bad(f"voice.default_language {settings.default_language!r} is not supported")
    for key in (
        "offline_rate",
        "sms_max_segments",
        "max_call_seconds",
        "max_prompt_seconds",
        "estimate_cjk_chars_per_second",
        "estimate_words_per_minute",
    ):
        if getattr(settings, key) <= 0:
            yield bad(f"voice.{key} must be positive")
    for key in ("offline_rates", "offline_voices", "say_voices", "say_languages"):
        for tag in getattr(settings, key):
            if normalize_language(tag) is None:
                yield bad(f"voice.{key} names an unsupported language {tag!r}")
    for tag, rate in settings.offline_rates.items():
        if rate <= 0:
            yield bad(f"voice.offline_rates.{tag} must be positive")
    if settings.templates_dir and not Path(settings.templates_dir).is_dir():
        yield bad(f"voice.templates_dir {settings.templates_dir!r} is not a directory")


def _coverage_problems(templates: TemplateSet) -> Iterator[Problem]:
    """Missing translations and snippets, syntax errors, stray files."""
    default = templates.default_language
    root = templates.root
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and child.name not in LANGUAGES:
                yield Problem(
                    f"{child.name}/",
                    child.name,
                    None,
                    WARNING,
                    "not a supported language: add a LanguageSpec in robot/voice/languages.py",
                )
    for language in LANGUAGES:
        for kind in TEMPLATE_KINDS:
            if templates.has_template(language, f"{kind}.j2"):
                continue
            if language == default:
                yield Problem(
                    f"{language}/{kind}.j2",
                    language,
                    None,
                    ERROR,
                    "missing in the default language",
                )
            else:
                yield Problem(
                    f"{language}/{kind}.j2",
                    language,
                    None,
                    WARNING,
                    f"missing: falls back to {default}",
                )
        if not (root / language).is_dir():
            continue
        for fraud_type in FRAUD_TYPES:
            name = templates.snippet_name(language, fraud_type)
            if name is None:
                yield Problem(
                    f"{language}/fraud/{GENERIC_SNIPPET}.j2",
                    language,
                    fraud_type,
                    ERROR,
                    "missing: no danger text for this fraud type",
                )
            elif fraud_type != "other" and name.endswith(f"/{GENERIC_SNIPPET}.j2"):
                yield Problem(
                    f"{language}/fraud/{fraud_type}.j2",
                    language,
                    fraud_type,
                    WARNING,
                    "missing: the generic danger text is used",
                )
        yield from _file_problems(templates, language)


def _file_problems(templates: TemplateSet, language: str) -> Iterator[Problem]:
    base = templates.root / language
    env = templates.environment(language)
    known_snippets = {f"{code}.j2" for code in FRAUD_TYPES if code != "other"}
    known_snippets.add(f"{GENERIC_SNIPPET}.j2")
    for path in sorted(base.rglob("*.j2")):
        relative = path.relative_to(base).as_posix()
        try:
            env.parse(path.read_text(encoding="utf-8"), relative, str(path))
        except TemplateSyntaxError as exc:
            yield Problem(
                f"{language}/{relative}",
                language,
                None,
                ERROR,
                f"syntax error on line {exc.lineno}: {exc.message}",
            )
        parts = relative.split("/")
        used = (
            len(parts) == 1 and (parts[0].startswith("_") or parts[0][:-3] in TEMPLATE_KINDS)
        ) or (len(parts) == 2 and parts[0] == "fraud" and parts[1] in known_snippets)
        if not used:
            yield Problem(
                f"{language}/{relative}",
                language,
                None,
                WARNING,
                "not a template kind, partial (_name.j2) or fraud snippet: unused",
            )


# --- rendered texts ---------------------------------------------------------------------------


def _variants(language: str) -> list[_Variant]:
    names = ("", SAMPLE_NAMES.get(language, "Sample Name"))
    relations = ("", SAMPLE_RELATIONS.get(language, "guard"))
    return [_Variant(n, r, c) for n in names for r in relations for c in (False, True)]


def _render_problems(
    templates: TemplateSet, settings: VoiceSettings, center: CenterSettings
) -> Iterator[Problem]:
    for language in LANGUAGES:
        for kind in TEMPLATE_KINDS:
            try:
                used, _ = templates.resolve(kind, language)
            except TemplateError:
                continue  # reported by _coverage_problems
            if used != language:
                continue  # the fallback is checked under its own language
            yield from _kind_problems(templates, settings, center, language, kind)


def _kind_problems(
    templates: TemplateSet,
    settings: VoiceSettings,
    center: CenterSettings,
    language: str,
    kind: str,
) -> Iterator[Problem]:
    """Render ``kind`` for every fraud type and sample context; report each check once per
    fraud type (at its first failing context), or once for all types if all fail alike."""
    template = f"{language}/{kind}.j2"
    context = {
        "center_name": center_name_for(center, language),
        "official_number": center.official_number,
        "emergency_number": center.emergency_number,
    }
    texts: dict[tuple[str, _Variant], str] = {}
    failures: dict[str, dict[str, str]] = {}  # check -> fraud type -> message
    for fraud_type in FRAUD_TYPES:
        for variant in _variants(language):
            try:
                rendered = templates.render(
                    kind,
                    fraud_type=fraud_type,
                    language=language,
                    context={**context, **vars(variant)},
                )
            except TemplateError as exc:
                found = [("render", f"does not render: {exc}")]
            else:
                texts[fraud_type, variant] = rendered.text
                found = list(
                    _text_problems(rendered.text, kind, language, settings, center, variant)
                )
            for check, message in found:
                failures.setdefault(check, {}).setdefault(fraud_type, message + variant.describe())
    for by_type in failures.values():
        messages = set(by_type.values())
        if len(by_type) == len(FRAUD_TYPES) and len(messages) == 1:
            yield Problem(template, language, None, ERROR, messages.pop())
        else:
            for fraud_type, message in by_type.items():
                yield Problem(template, language, fraud_type, ERROR, message)
    yield from _consistency_problems(texts, kind, language, template)


def _consistency_problems(
    texts: dict[tuple[str, _Variant], str], kind: str, language: str, template: str
) -> Iterator[Problem]:
    if kind == "relatives_notice":
        for variant in _variants(language):
            distinct = {texts[ft, variant] for ft in FRAUD_TYPES if (ft, variant) in texts}
            if len(distinct) > 1:
                yield Problem(
                    template,
                    language,
                    None,
                    ERROR,
                    "changes with the fraud type: a relative must not be told the fraud details",
                )
                return
    elif kind in SPOKEN_KINDS:
        for (fraud_type, variant), text in texts.items():
            plain = _Variant("", "", variant.has_case)
            if texts.get((fraud_type, plain), text) != text:
                yield Problem(
                    template,
                    language,
                    fraud_type,
                    WARNING,
                    "uses name or relation: the spoken text cannot be pre-rendered, "
                    "so offline mode falls back to <Say>",
                )
                return


def _text_problems(
    text: str,
    kind: str,
    language: str,
    settings: VoiceSettings,
    center: CenterSettings,
    variant: _Variant,
) -> Iterator[tuple[str, str]]:
    if not text:
        yield "empty", "renders to empty text"
        return
    spec = spec_for(language)
    is_sms = kind in SMS_KINDS
    for link in find_links(text):
        yield "link", f"contains a link or contact handle {link!r}"
    allowed = (
        {center.official_number}
        if is_sms
        else {
            center.official_number,
            center.emergency_number,
        }
    )
    for number in find_phone_numbers(text, allowed=allowed):
        yield (
            "number",
            f"contains the number {number!r}: only the center's official number may appear"
            + ("" if is_sms else f" (and {center.emergency_number} in calls)"),
        )
    if is_sms:
        size = sms_size(text)
        if size.segments > settings.sms_max_segments:
            yield (
                "sms",
                (
                    f"SMS needs {size.segments} {size.encoding} segments ({size.units} units); "
                    f"the budget is {settings.sms_max_segments} "
                    f"({size.budget(settings.sms_max_segments)} units)"
                ),
            )
    seconds = estimate_seconds(text, cjk=spec.cjk, settings=settings)
    limit = settings.max_prompt_seconds if kind in PROMPT_KINDS else settings.max_call_seconds
    if kind in SPOKEN_KINDS and seconds > limit:
        yield "duration", f"takes about {seconds:.1f} s to say; the limit is {limit:g} s"
    if kind in SCRIPT_KINDS:
        opening = " ".join(_sentences(text)[:2])
        for label, value in (
            ("center name", center_name_for(center, language)),
            ("official number", center.official_number),
        ):
            if value not in opening:
                yield "opening", f"does not give the {label} {value!r} in its first two sentences"
        # With an open case the inbound greeting is a lead-in to warning_call, which has them.
        lead_in = kind == "inbound_greeting" and variant.has_case
        missing = [term for term in spec.assurance_terms if term.lower() not in text.lower()]
        if missing and not lead_in:
            yield "assurances", f"lacks the negative assurances (missing: {', '.join(missing)})"
    if kind == "already_paid" and center.emergency_number not in text:
        yield "emergency", f"does not tell the person to call {center.emergency_number}"
    if kind == "key_menu":
        missing_keys = [key for key in "1239" if key not in text]
        if missing_keys:
            yield "keys", f"does not offer key(s) {', '.join(missing_keys)}"


def _sentences(text: str) -> list[str]:
    return [part for part in re.split(r"(?<=[。！？!?])|(?<=\.)\s+", text) if part.strip()]
