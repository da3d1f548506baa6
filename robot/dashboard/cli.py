"""``robot staff``: accounts for the call center, and drills against the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from robot.cli import get_settings
from robot.models import Role, Staff, utcnow
from robot.phones import mask


@contextmanager
def _db() -> Iterator[Session]:
    """One transaction against the configured database (committed unless an error escapes)."""
    from robot.db import create_db_engine, create_session_factory, session_scope

    engine = create_db_engine(get_settings().database)
    try:
        with session_scope(create_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _read_password(password_file: str | None) -> str:
    if password_file:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"--password-file: {exc.strerror}") from None
        return text.rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _find(session: Session, name: str) -> Staff:
    row = session.scalar(select(Staff).where(Staff.username == name))
    if row is None:
        raise click.ClickException(f"no staff called {name!r}")
    return row


@click.group()
def staff() -> None:
    """Call-center staff accounts and drills."""


@staff.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.OPERATOR.value,
    show_default=True,
)
@click.option("--password-file", type=click.Path(dir_okay=False), help="Read the password here.")
@click.option("--area", help="Operators see only this area's cases (default: every area).")
@click.option(
    "--language",
    type=click.Choice(["zh-CN", "en-US"]),
    default=None,
    help="Dashboard language (default: dashboard.default_language).",
)
@click.option("--phone", help="The operator's own phone, rung first for bridged calls.")
@click.option("--display-name", help="Name shown to colleagues (default: NAME).")
def add(
    name: str,
    role: str,
    password_file: str | None,
    area: str | None,
    language: str | None,
    phone: str | None,
    display_name: str | None,
) -> None:
    """Create a member of staff; the password comes from a prompt or --password-file."""
    from robot.dashboard.accounts import AccountError, add_staff

    settings = get_settings()
    password = _read_password(password_file)
    try:
        with _db() as session:
            add_staff(
                session,
                name,
                password,
                role=role,
                display_name=display_name,
                area=area,
                language=language or settings.dashboard.default_language,
                phone=phone,
                default_region=settings.intake.default_region,
            )
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {role} {name}" + (f" (area {area})" if area else " (every area)"))


@staff.command("list")
def list_staff() -> None:
    """List staff (never passwords)."""
    now = utcnow()
    with _db() as session:
        rows = session.scalars(select(Staff).order_by(Staff.username)).all()
        if not rows:
            click.echo("no staff")
        for s in rows:
            state = "active" if s.active else "disabled"
            if s.locked_until and s.locked_until > now:
                state = f"locked until {s.locked_until.isoformat(timespec='minutes')}"
            phone = "phone set" if s.phone else "no phone"
            click.echo(f"{s.username}\t{s.role}\t{s.area or '*'}\t{s.language}\t{phone}\t{state}")


@staff.command("unlock")
@click.argument("name")
def unlock_cmd(name: str) -> None:
    """Clear failed sign-ins and a lockout."""
    from robot.dashboard.accounts import unlock

    with _db() as session:
        unlock(session, _find(session, name), "system")
    click.echo(f"unlocked {name}")


@staff.command("passwd")
@click.argument("name")
@click.option("--password-file", type=click.Path(dir_okay=False))
def passwd(name: str, password_file: str | None) -> None:
    """Set a new password (ends that person's open sessions)."""
    from robot.dashboard.accounts import AccountError, set_password

    password = _read_password(password_file)
    try:
        with _db() as session:
            set_password(session, _find(session, name), password)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"password changed for {name}")


@staff.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Stop an account from signing in (its sessions end at the next request)."""
    with _db() as session:
        _find(session, name).active = False
    click.echo(f"disabled {name}")


@staff.command("drill")
@click.option("--count", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option(
    "--digit",
    "digits",
    multiple=True,
    type=click.Choice([str(d) for d in range(10)]),
    help="Emulator behaviour by last digit (repeatable); default 2,3,5,6,7,4,8,1.",
)
@click.option("--area", help="Area of the practice cases (so area operators see them).")
@click.option("--language", type=click.Choice(["zh-CN", "en-US"]), default=None)
def drill(count: int, digits: tuple[str, ...], area: str | None, language: str | None) -> None:
    """Post practice warnings for the emulator's test numbers (+861380013800X), marked DRILL."""
    from robot.dashboard.drill import DEFAULT_DIGITS, DrillRefused, post_drill
    from robot.db import create_db_engine, create_session_factory
    from robot.wakeup import Waker

    settings = get_settings()
    engine = create_db_engine(settings.database)
    try:
        posted = post_drill(
            create_session_factory(engine),
            settings,
            "system:drill",
            count=count,
            digits=digits or DEFAULT_DIGITS,
            area=area,
            language=language,
            waker=Waker(engine),
        )
    except DrillRefused as exc:
        hint = ""
        if exc.reason == "provider":
            hint = (
                f" (twilio.api_base_url is {settings.twilio.api_base_url}; point it at the "
                "emulator, e.g. ROBOT_TWILIO_API_BASE_URL=http://127.0.0.1:8010)"
            )
        raise click.ClickException(f"{exc}{hint}") from None
    finally:
        engine.dispose()
    for case in posted:
        how = "new case" if case.created else "joined the open drill case"
        click.echo(f"drill case {case.case_id}\t{mask(case.phone)}\t{how}")
