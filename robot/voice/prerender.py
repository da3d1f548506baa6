"""Fill the audio cache with every spoken script before any call needs it.

Spoken texts are rendered without the person's name, for every language, fraud type and
has_case value (and, for relatives_notice, every relation code of the intake API): exactly the
texts the call flow renders, so the Speaker finds them by hash. Texts that use a person's name
are not covered (the linter warns).
"""

from __future__ import annotations

import itertools
import logging

from jinja2 import TemplateError

from robot.config import CenterSettings, Settings, VoiceSettings
from robot.intake.validation import RELATIONS
from robot.voice.languages import LANGUAGES
from robot.voice.offline import CacheReport
from robot.voice.speech import Speaker
from robot.voice.templates import FRAUD_TYPES, SPOKEN_KINDS, TemplateSet

log = logging.getLogger(__name__)


def spoken_texts(
    settings: VoiceSettings, center: CenterSettings
) -> tuple[list[tuple[str, str]], list[str]]:
    """Every distinct (text, language) the call flow can speak, and render errors."""
    templates = TemplateSet(settings)
    texts: dict[tuple[str, str], None] = {}
    errors: list[str] = []
    for language, kind, fraud_type in itertools.product(LANGUAGES, SPOKEN_KINDS, FRAUD_TYPES):
        # A relative's call names the relation (a short list of codes); nothing else does.
        relations = ("", *RELATIONS) if kind == "relatives_notice" else ("",)
        for has_case, relation in itertools.product((False, True), relations):
            try:
                rendered = templates.render(
                    kind,
                    fraud_type=fraud_type,
                    language=language,
                    context={"has_case": has_case, "relation": relation},
                    center=center,
                )
            except TemplateError as exc:
                errors.append(f"{language}/{kind}.j2 [{fraud_type}]: {exc}")
                continue
            texts[rendered.text, rendered.language] = None
    return list(texts), sorted(set(errors))


def prerender_all(
    settings: VoiceSettings | Settings,
    center: CenterSettings | None = None,
    *,
    public_base_url: str = "",
    force: bool = False,
) -> CacheReport:
    """Render every spoken script into ``cache_dir`` unless it is there already.

    Does nothing unless ``voice.mode`` is "offline" or ``force`` is set. Blocks (about a
    second per script on a cold cache, spread over up to 4 worker processes); call it at
    start-up before taking calls, or from ``robot voice render``. Failures are returned in
    the report, not raised: <Say> covers any text without audio.
    """
    if isinstance(settings, Settings):
        center = center if center is not None else settings.center
        public_base_url = public_base_url or settings.server.public_base_url
        settings = settings.voice
    center = center if center is not None else CenterSettings()
    if settings.mode != "offline" and not force:
        return CacheReport()
    texts, errors = spoken_texts(settings, center)
    report = Speaker(settings, public_base_url).render_to_cache(texts)
    report.failed[:0] = errors
    log.info(
        "voice cache: %d rendered, %d already cached, %d failed in %.1f s",
        report.rendered,
        report.cached,
        len(report.failed),
        report.seconds,
    )
    for failure in report.failed:
        log.error("voice pre-render failed: %s", failure)
    return report
