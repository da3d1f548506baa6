"""The ``robot`` command: thin wrappers over the service's parts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import click

from robot.config import ConfigError, Settings, load_settings


def get_settings(ctx: click.Context | None = None) -> Settings:
    """The settings of this invocation, loaded once (fails with the bad key named)."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    root.ensure_object(dict)
    if "settings" not in root.obj:
        try:
            root.obj["settings"] = load_settings(root.obj.get("config_path"))
        except ConfigError as exc:
            raise click.ClickException(f"configuration error: {exc}") from None
    settings: Settings = root.obj["settings"]
    return settings


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="ROBOT_CONFIG",
    help="TOML settings file (default: $ROBOT_CONFIG; built-in defaults without it).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Warning Robot: text and phone people being defrauded right now, and escalate."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


# --- db -----------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from robot import migrate
    from robot.db import create_db_engine

    engine = create_db_engine(get_settings().database)
    migrate.upgrade(engine, revision)
    click.echo(f"database at {revision}: {engine.url.render_as_string(hide_password=True)}")


# --- sources ------------------------------------------------------------------------------------


@main.group()
def sources() -> None:
    """Upstream feeds allowed to post warnings."""


def _session() -> Any:
    from robot.db import create_db_engine, create_session_factory, session_scope

    return session_scope(create_session_factory(create_db_engine(get_settings().database)))


@sources.command("add")
@click.argument("name")
@click.option("--callback-url", help="Where case outcomes are sent (signed JSON).")
@click.option("--require-signature", is_flag=True, help="Refuse unsigned intake requests.")
def sources_add(name: str, callback_url: str | None, require_signature: bool) -> None:
    """Create a source and print its API key (shown this once only)."""
    from robot.sources import SourceError, add_source

    try:
        with _session() as session:
            created = add_source(session, name, callback_url, require_signature=require_signature)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"source:         {name}")
    click.echo(f"api key:        {created.api_key}")
    click.echo(f"signing secret: {created.signing_secret}")
    click.echo("Store both now: they are not shown again (only their hash is kept for the key).")


@sources.command("list")
def sources_list() -> None:
    """List sources (keys are never shown)."""
    from robot.sources import list_sources

    with _session() as session:
        rows = list_sources(session)
        if not rows:
            click.echo("no sources")
        for source in rows:
            state = "revoked" if source.revoked_at else "active"
            signed = "signed" if source.require_signature else "unsigned-ok"
            callback = source.callback_url or "-"
            click.echo(f"{source.name}\t{state}\t{source.key_prefix}…\t{signed}\t{callback}")


@sources.command("revoke")
@click.argument("name")
def sources_revoke(name: str) -> None:
    """Revoke a source's key: its requests are refused from now on."""
    from robot.sources import SourceError, revoke_source

    try:
        with _session() as session:
            revoke_source(session, name)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked {name}")


# --- processes ----------------------------------------------------------------------------------


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: server.host).")
@click.option("--port", type=int, default=None, help="Port (default: server.port).")
@click.option("--workers", type=int, default=2, show_default=True, help="gunicorn processes.")
@click.option("--threads", type=int, default=4, show_default=True, help="Threads per process.")
def web(host: str | None, port: int | None, workers: int, threads: int) -> None:
    """Serve the API, webhooks and dashboard under gunicorn."""
    from robot.serve import PortInUse, serve_web

    settings = get_settings()
    try:
        serve_web(
            settings, host or settings.server.host, port or settings.server.port, workers, threads
        )
    except PortInUse as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
def worker() -> None:
    """Run the scheduler: place due attempts, apply the policy, deliver feedback."""
    from robot.worker import run_worker

    run_worker(get_settings())


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: emulator.host).")
@click.option("--port", type=int, default=None, help="Port (default: emulator.port).")
def emulator(host: str | None, port: int | None) -> None:
    """Run the local Twilio-compatible carrier."""
    from robot.emulator.server import serve_emulator
    from robot.serve import emulator_settings

    settings = get_settings()
    serve_emulator(
        emulator_settings(settings),
        host or settings.emulator.host,
        port or settings.emulator.port,
    )


@main.command()
@click.option("--host", default=None, help="Interface for the web server (default: server.host).")
@click.option(
    "--port", type=int, default=None, help="Port for the web server (default: server.port)."
)
def run(host: str | None, port: int | None) -> None:
    """All in one: migrate, then web + worker + the local emulator (the embedded default)."""
    from robot import migrate
    from robot.db import create_db_engine

    settings = get_settings()
    host = host or settings.server.host
    port = port or settings.server.port
    migrate.upgrade(create_db_engine(settings.database))
    emulator_url = f"http://{settings.emulator.host}:{settings.emulator.port}"
    env = dict(os.environ)
    # The children talk to the local emulator, and the emulator calls back to this web server.
    env.setdefault("ROBOT_TWILIO_API_BASE_URL", emulator_url)
    env.setdefault("ROBOT_SERVER_PUBLIC_BASE_URL", f"http://{_reachable(host)}:{port}")
    config = click.get_current_context().find_root().obj.get("config_path")
    base = [sys.executable, "-m", "robot"] + (["--config", config] if config else [])
    commands = [
        [*base, "emulator"],
        [*base, "web", "--host", host, "--port", str(port)],
        [*base, "worker"],
    ]
    children = [subprocess.Popen(cmd, env=env) for cmd in commands]
    click.echo(f"Warning Robot on http://{host}:{port} (emulator at {emulator_url}); Ctrl-C stops")
    _supervise(children)


def _reachable(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _supervise(children: list[subprocess.Popen[bytes]]) -> None:
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
    failed = [str(c.args) for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
    if failed and not stopping:
        raise click.ClickException(f"a process stopped unexpectedly: {failed[0]}")


def _register_subcommands() -> None:
    """Command groups owned by their subsystems: `robot voice ...` and `robot staff ...`."""
    from robot.dashboard.cli import staff
    from robot.voice.cli import voice

    main.add_command(voice)
    main.add_command(staff)


_register_subcommands()


if __name__ == "__main__":  # pragma: no cover
    main()
