"""``robot voice``: lint the scripts, pre-render the audio cache, preview one script as audio."""

from __future__ import annotations

from pathlib import Path

import click

from robot.config import Settings, load_settings
from robot.voice.languages import LANGUAGES, center_name_for, normalize_language
from robot.voice.lint import ERROR, WARNING, lint
from robot.voice.offline import RenderError
from robot.voice.prerender import prerender_all
from robot.voice.speech import Speaker
from robot.voice.templates import FRAUD_TYPES, TEMPLATE_KINDS, render


def get_settings() -> Settings:
    """Settings from the click context: a Settings object (``obj=`` in tests), else the
    ``robot`` command's own (its --config option), else loaded from the environment."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return load_settings()
    found = ctx.find_object(Settings)
    if found is not None:
        return found
    from robot import cli as root_cli  # imported late: robot.cli imports this module

    return root_cli.get_settings(ctx)


@click.group("voice")
def voice() -> None:
    """Voice scripts and offline speech."""


@voice.command("lint")
@click.option("--strict", is_flag=True, help="Treat warnings (missing translations) as errors.")
def lint_command(strict: bool) -> None:
    """Render every template for every fraud type and language and check it."""
    settings = get_settings()
    problems = lint(settings.voice, settings.center, strict=strict)
    for problem in problems:
        click.echo(str(problem), err=problem.severity == ERROR)
    errors = sum(problem.severity == ERROR for problem in problems)
    warnings = sum(problem.severity == WARNING for problem in problems)
    click.echo(f"{errors} error(s), {warnings} warning(s)")
    if errors:
        raise SystemExit(1)


@voice.command("render")
def render_command() -> None:
    """Pre-render every call script into the offline audio cache (whatever voice.mode is)."""
    settings = get_settings()
    report = prerender_all(settings, force=True)
    for failure in report.failed:
        click.echo(f"FAILED {failure}", err=True)
    click.echo(
        f"{report.rendered} rendered, {report.cached} already cached, "
        f"{len(report.failed)} failed ({report.seconds:.1f} s) in {settings.voice.cache_dir}"
    )
    if report.failed:
        raise SystemExit(1)


@voice.command("preview")
@click.argument("template", type=click.Choice(TEMPLATE_KINDS), metavar="TEMPLATE")
@click.option("--fraud-type", type=click.Choice(FRAUD_TYPES), default="other", show_default=True)
@click.option(
    "--lang", "language", default=None, help="Language tag; default voice.default_language."
)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--name", default="", help="The person's name, for templates that use it.")
@click.option("--relation", default="", help="relatives_notice: who the person is to the reader.")
@click.option("--has-case/--no-case", default=True, help="inbound_greeting: caller has a case.")
def preview_command(
    template: str,
    fraud_type: str,
    language: str | None,
    output: Path,
    name: str,
    relation: str,
    has_case: bool,
) -> None:
    """Render TEMPLATE offline to a WAV file to listen to."""
    settings = get_settings()
    wanted = language or settings.voice.default_language
    if normalize_language(wanted) is None:
        raise click.BadParameter(
            f"{wanted!r} is not a supported language ({', '.join(LANGUAGES)})",
            param_hint="--lang",
        )
    rendered = render(
        template,
        fraud_type=fraud_type,
        language=wanted,
        context={"name": name, "relation": relation, "has_case": has_case},
        settings=settings.voice,
        center=settings.center,
    )
    if rendered.fell_back:
        click.echo(f"note: no {template} in {wanted}; using {rendered.language}", err=True)
    click.echo(rendered.text)
    speaker = Speaker(settings.voice, settings.server.public_base_url)
    try:
        speaker.render_wav(rendered.text, rendered.language, output)
    except RenderError as exc:
        raise click.ClickException(f"offline rendering failed: {exc}") from None
    center = center_name_for(settings.center, rendered.language)
    click.echo(f"wrote {output} ({rendered.template}, {center})")
