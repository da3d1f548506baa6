"""Supported template languages and how a language tag maps onto one of them.

To add a language: add a :class:`LanguageSpec` to ``SPECS`` and a ``voice_templates/<tag>/``
directory with every template kind and a ``fraud/`` snippet per fraud type.
"""

from __future__ import annotations

from dataclasses import dataclass

from robot.config import CenterSettings


@dataclass(frozen=True)
class LanguageSpec:
    #: The template directory name and the tag every API returns, e.g. "zh-CN".
    tag: str
    #: Primary language subtags (lower case) that read this language: "zh" and "cmn" for Mandarin.
    primary: tuple[str, ...]
    #: Which CenterSettings field names the center in this language.
    center_name_field: str
    #: Built-in Twilio <Say> defaults; VoiceSettings.say_voices / say_languages override them.
    say_voice: str
    say_language: str
    #: Built-in espeak-ng voice; VoiceSettings.offline_voices overrides it.
    espeak_voice: str
    #: Written without spaces: the duration estimate counts characters, not words.
    cjk: bool
    #: Words every warning-type call script must contain: the negative assurances
    #: (safe account, verification code, screen sharing, app install). Checked by the linter.
    assurance_terms: tuple[str, ...]


SPECS: tuple[LanguageSpec, ...] = (
    LanguageSpec(
        tag="zh-CN",
        primary=("zh", "cmn"),
        center_name_field="name_zh",
        say_voice="Polly.Zhiyu",
        say_language="cmn-CN",
        espeak_voice="cmn",
        cjk=True,
        assurance_terms=("安全账户", "验证码", "屏幕共享", "下载"),
    ),
    LanguageSpec(
        tag="en-US",
        primary=("en",),
        center_name_field="name",
        say_voice="Polly.Joanna",
        say_language="en-US",
        espeak_voice="en-us",
        cjk=False,
        assurance_terms=("safe account", "code", "share your screen", "app"),
    ),
)

#: Supported template languages, in the order the linter and the pre-renderer walk them.
LANGUAGES: tuple[str, ...] = tuple(spec.tag for spec in SPECS)

_BY_TAG = {spec.tag.lower(): spec for spec in SPECS}
#: Subtags naming a language we have no script for even though its primary subtag is known
#: (Cantonese is written "zh-yue"; a Mandarin recording would not help).
_UNSUPPORTED_SUBTAGS = frozenset({"yue"})


def normalize_language(tag: str | None) -> str | None:
    """Map a language tag (``zh``, ``zh-Hans``, ``cmn-Hans-CN``, ``en_GB`` ...) to a template
    language, case-insensitively; None when no template language fits.

    All Mandarin tags map to zh-CN (Traditional-script tags too: the speech is the same Mandarin
    and the text stays readable); all English tags map to en-US.
    """
    if not tag:
        return None
    cleaned = tag.strip().replace("_", "-").lower()
    if cleaned in _BY_TAG:
        return _BY_TAG[cleaned].tag
    subtags = [part for part in cleaned.split("-") if part]
    if not subtags or _UNSUPPORTED_SUBTAGS.intersection(subtags):
        return None
    for spec in SPECS:
        if subtags[0] in spec.primary:
            return spec.tag
    return None


def spec_for(language: str) -> LanguageSpec:
    """The spec of a supported language tag (any spelling normalize_language accepts)."""
    tag = normalize_language(language)
    if tag is None:
        raise ValueError(f"unsupported language: {language!r}")
    return _BY_TAG[tag.lower()]


def center_name_for(center: CenterSettings, language: str) -> str:
    """The center's name as the scripts of ``language`` say it (name_zh for Chinese)."""
    value = getattr(center, spec_for(language).center_name_field, "") or center.name
    return str(value)
