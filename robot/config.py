"""Settings: read the TOML file, apply ROBOT_* overrides and *_FILE secrets, validate.

Every setting lives in a frozen dataclass below; ``config.example.toml`` documents each one.
A bad value raises :class:`ConfigError` naming the key, and start-up stops there.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import phonenumbers


class ConfigError(ValueError):
    """A setting is missing, unknown or has a bad value; the message names the key."""


# --- sections -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    #: The URL Twilio reaches us at; webhook signatures are checked against it, not the
    #: request's own URL, so a TLS-terminating proxy in front does not break them.
    public_base_url: str = "http://127.0.0.1:8000"
    #: Largest request body the intake API reads (1000 warnings fit in well under 2 MiB).
    max_body_bytes: int = 2 * 1024 * 1024
    #: Signs dashboard session cookies. Empty means a random one per process (sessions are lost
    #: on restart); set it, or secret_key_file, in production.
    secret_key: str = ""
    #: Mark cookies Secure (HTTPS only). Turn off only for plain-HTTP local runs.
    secure_cookies: bool = False
    #: Each gunicorn process listens on its own socket (``SO_REUSEPORT``) and the kernel spreads
    #: new connections over them. With one shared socket, whichever process wakes first takes
    #: the connection, and a feed's few kept-alive connections can all land in one process, on
    #: one core (docs/performance-history.md, items 52 and 53). Only Linux spreads them, so
    #: elsewhere the default is off.
    reuse_port: bool = sys.platform.startswith("linux")


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///var/robot.db"
    echo: bool = False
    #: Seconds a SQLite writer waits for the lock before giving up.
    sqlite_busy_timeout: float = 30.0
    pool_size: int = 10


@dataclass(frozen=True)
class IntakeSettings:
    #: Region used to read numbers written without a country code (ISO 3166 code).
    default_region: str = "CN"
    max_batch: int = 1000
    #: Accepted clock skew for signed intake requests, in seconds.
    signature_window_seconds: int = 300


@dataclass(frozen=True)
class CenterSettings:
    """Who the robot says it is; every script names the center and its official number."""

    name: str = "City Anti-Fraud Center"
    name_zh: str = "市反诈中心"
    #: The number people can call to verify the warning is genuine.
    official_number: str = "96110"
    #: The call-center line that key 2 (put me through) and inbound calls are dialled to.
    call_center_number: str = "+8657196110"
    #: The emergency number the script tells a person who already paid to call.
    emergency_number: str = "110"


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str = "AC00000000000000000000000000000000"
    auth_token: str = "emulator-auth-token"
    #: Older auth tokens still accepted on incoming webhooks while a rotation is under way.
    previous_auth_tokens: tuple[str, ...] = ()
    #: Optional API key pair used for REST requests instead of the auth token.
    api_key_sid: str = ""
    api_key_secret: str = ""
    #: Caller numbers; the same person is always called from the same one.
    from_numbers: tuple[str, ...] = ("+15005550006",)
    messaging_service_sid: str = ""
    api_base_url: str = "https://api.twilio.com"
    #: Seconds the phone rings before the call counts as not answered.
    ring_timeout: int = 30
    #: Seconds one REST request to the provider may take.
    request_timeout: float = 10.0
    #: Seconds Twilio may hold an SMS in its queue; a late warning is worse than none.
    sms_validity_seconds: int = 600
    answering_machine_detection: bool = True
    #: How many times a transient provider error (429, 5xx, timeout) is retried.
    max_transient_retries: int = 5


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8010
    #: Seconds of emulated time per real second; 60 makes a ring of 30 s last half a second.
    time_scale: float = 1.0
    calls_per_second: float = 0.0
    max_concurrent_calls: int = 0
    #: Per-number callee behaviour overriding the last-digit rule, e.g. {"+8613800000000" = "busy"}.
    callees: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerSettings:
    #: Seconds between polls of the attempts table when nothing wakes the worker.
    poll_interval: float = 1.0
    batch_size: int = 50
    #: Seconds a claim lasts; a worker that dies mid-tick leaves its claims to expire.
    lease_seconds: int = 60
    #: Provider limits shared by every worker (0 means no limit).
    calls_per_second: float = 1.0
    max_concurrent_calls: int = 2
    sms_per_second: float = 10.0
    #: Attempts still open this many seconds after placing are fetched from the provider.
    reconcile_after_seconds: int = 300
    #: Distinguishes workers in claims and logs; empty means host:pid.
    worker_id: str = ""


@dataclass(frozen=True)
class VoiceSettings:
    #: "say": Twilio's text-to-speech; "offline": pyttsx3/espeak-ng audio served by us.
    mode: str = "say"
    default_language: str = "zh-CN"
    templates_dir: str = ""
    cache_dir: str = "var/voice-cache"
    #: SMS budget in segments (a UCS-2 segment holds 67 characters once concatenated).
    sms_max_segments: int = 2
    #: Speaking rate for offline rendering, words per minute.
    offline_rate: int = 160
    #: Per-language overrides of offline_rate (espeak-ng's Mandarin is slow at 160).
    offline_rates: Mapping[str, int] = field(default_factory=lambda: {"zh-CN": 200})
    #: espeak-ng voice per template language for offline rendering.
    offline_voices: Mapping[str, str] = field(
        default_factory=lambda: {"zh-CN": "cmn", "en-US": "en-us"}
    )
    #: Twilio <Say> voice per template language; a language left out uses the built-in default.
    say_voices: Mapping[str, str] = field(
        default_factory=lambda: {"zh-CN": "Polly.Zhiyu", "en-US": "Polly.Joanna"}
    )
    #: Twilio <Say> language attribute per template language (Polly's Mandarin code is cmn-CN).
    say_languages: Mapping[str, str] = field(
        default_factory=lambda: {"zh-CN": "cmn-CN", "en-US": "en-US"}
    )
    #: Longest a call script may run before the key menu, by the linter's estimate (seconds).
    max_call_seconds: float = 40.0
    #: Longest a short prompt (key menu, goodbye, connecting...) may run (seconds).
    max_prompt_seconds: float = 15.0
    #: Speaking speed the linter assumes: Chinese characters per second...
    estimate_cjk_chars_per_second: float = 4.5
    #: ...and words per minute for languages written with spaces.
    estimate_words_per_minute: float = 150.0


@dataclass(frozen=True)
class DashboardSettings:
    #: Minutes a claim on a case lasts without activity before it returns to the queue.
    claim_minutes: int = 15
    max_failed_logins: int = 5
    lockout_minutes: int = 15
    default_language: str = "zh-CN"
    #: Response SLA per urgency, minutes from escalated_at to the first staff action. Critical
    #: means already paid or asked for an officer; the others are the case's risk level.
    sla_critical_minutes: float = 2.0
    sla_high_minutes: float = 5.0
    sla_medium_minutes: float = 15.0
    sla_low_minutes: float = 30.0
    #: Seconds between the queue page's refreshes (it polls a JSON endpoint).
    poll_seconds: float = 3.0
    #: Hours a staff sign-in lasts; the next request after that asks for the password again.
    session_hours: float = 12.0
    #: Delay added to every failed sign-in, growing with consecutive failures (seconds, capped).
    failed_login_delay_seconds: float = 1.0
    #: IANA zone in which the dashboard shows times and counts "today".
    timezone: str = "Asia/Shanghai"
    #: Most cases the queue lists at once (most urgent first).
    queue_limit: int = 200


@dataclass(frozen=True)
class FeedbackSettings:
    #: Seconds one delivery to a source's callback URL may take.
    request_timeout: float = 5.0
    max_backoff_seconds: int = 3600


@dataclass(frozen=True)
class RiskPolicy:
    """The escalation ladder for one risk level; times are minutes after the warning."""

    send_sms: bool = True
    robot_call: bool = True
    #: Robot call retries after the first call and their spacing.
    call_retries: int = 3
    retry_every_minutes: float = 5.0
    #: Hand the case to humans at the first failed call (True) or only at human_queue_minutes.
    human_on_first_failure: bool = True
    human_queue_minutes: float | None = 5.0
    contacts_minutes: float | None = 15.0
    home_visit_minutes: float | None = 30.0
    #: A busy line may mean the fraudster is on the phone right now: contacts and humans at once.
    busy_escalates: bool = True
    #: Days after closing on which a follow-up robot call is made.
    follow_up_days: tuple[int, ...] = (1, 3, 7, 14, 28)


@dataclass(frozen=True)
class PolicySettings:
    high: RiskPolicy = RiskPolicy()
    medium: RiskPolicy = RiskPolicy(
        call_retries=2,
        retry_every_minutes=15.0,
        human_on_first_failure=False,
        human_queue_minutes=30.0,
        contacts_minutes=None,
        home_visit_minutes=None,
        busy_escalates=False,
        follow_up_days=(1, 7, 28),
    )
    low: RiskPolicy = RiskPolicy(
        robot_call=False,
        call_retries=0,
        human_on_first_failure=False,
        human_queue_minutes=None,
        contacts_minutes=None,
        home_visit_minutes=None,
        busy_escalates=False,
        follow_up_days=(),
    )
    #: Follow-ups are placed only between these local hours (live warnings ignore them).
    quiet_hours_start: int = 21
    quiet_hours_end: int = 8
    #: At most this many robot calls to one number in any hour.
    max_calls_per_hour: int = 6
    #: At most one follow-up call per number per day.
    max_follow_ups_per_day: int = 1


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    intake: IntakeSettings = IntakeSettings()
    center: CenterSettings = CenterSettings()
    twilio: TwilioSettings = TwilioSettings()
    emulator: EmulatorConfig = EmulatorConfig()
    worker: WorkerSettings = WorkerSettings()
    voice: VoiceSettings = VoiceSettings()
    dashboard: DashboardSettings = DashboardSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    policy: PolicySettings = PolicySettings()
    #: Policy minutes per real minute: 60 makes a policy minute pass in a real second (drills).
    time_scale: float = 1.0
    log_level: str = "INFO"


# --- loading ------------------------------------------------------------------------------------

ENV_PREFIX = "ROBOT_"


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build Settings from ``path`` (or ``ROBOT_CONFIG``), then the environment.

    Order of precedence: environment over file over defaults. ``ROBOT_SECTION_KEY`` sets
    ``[section] key``; ``ROBOT_KEY`` sets a top-level key; a ``_FILE`` suffix (in the environment
    or as a ``key_file`` entry in the file) reads the value from that file, for secrets.
    """
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    config_path = path or env.get("ROBOT_CONFIG")
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {config_path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from None
    _apply_environment(raw, env)
    settings: Settings = _build(Settings(), raw, "")
    _validate(settings)
    return settings


def _apply_environment(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == "ROBOT_CONFIG":
            continue
        if name.startswith("ROBOT_TEST_"):
            continue  # test-suite knobs, not service settings
        rest = name[len(ENV_PREFIX) :].lower()
        from_file = rest.endswith("_file") and _lookup(rest[: -len("_file")]) is not None
        if from_file:
            rest = rest[: -len("_file")]
        target = _lookup(rest)
        if target is None:
            raise ConfigError(f"{name}: no such setting")
        if from_file:
            value = _read_secret(name, value)
        *parents, key = target
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(parents)}: expected a table")
        node[key] = _EnvString(value)


class _EnvString(str):
    """A value that came from the environment: parsed by the field's type, not TOML's."""


_SECTION_NAMES = (
    "server",
    "database",
    "intake",
    "center",
    "twilio",
    "emulator",
    "worker",
    "voice",
    "dashboard",
    "feedback",
    "policy",
)


def _lookup(name: str) -> tuple[str, ...] | None:
    """Map ``twilio_auth_token`` to ("twilio", "auth_token"); policy levels nest one deeper."""
    top = {f.name for f in dataclasses.fields(Settings)}
    if name in top and name not in _SECTION_NAMES:
        return (name,)
    for section in _SECTION_NAMES:
        prefix = section + "_"
        if not name.startswith(prefix):
            continue
        key = name[len(prefix) :]
        section_type = _field_type(Settings, section)
        keys = {f.name for f in dataclasses.fields(section_type)}
        if key in keys:
            return (section, key)
        if section == "policy":
            for level in ("high", "medium", "low"):
                if key.startswith(level + "_") and key[len(level) + 1 :] in {
                    f.name for f in dataclasses.fields(RiskPolicy)
                }:
                    return (section, level, key[len(level) + 1 :])
    return None


def _read_secret(key: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read secret file {path}: {exc.strerror}") from None


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _build(base: Any, raw: Any, where: str) -> Any:
    """Return ``base`` (a settings dataclass) with the keys of ``raw`` replaced, validated."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: expected a table")
    hints = typing.get_type_hints(type(base))
    names = {f.name for f in dataclasses.fields(base)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = where + key
        if key.endswith("_file") and key[: -len("_file")] in names:
            target = key[: -len("_file")]
            if not isinstance(value, str):
                raise ConfigError(f"{dotted}: expected a file path")
            values[target] = _convert(hints[target], _read_secret(dotted, value), where + target)
        elif key not in names:
            raise ConfigError(f"{dotted}: unknown setting")
        elif dataclasses.is_dataclass(hints[key]):
            # Sections start from their own defaults (medium's policy differs from high's).
            values[key] = _build(getattr(base, key), value, dotted + ".")
        else:
            values[key] = _convert(hints[key], value, dotted)
    return dataclasses.replace(base, **values)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(tp: Any, value: Any, key: str) -> Any:
    from_env = isinstance(value, _EnvString)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (from_env and value == ""):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_env and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if from_env:
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if from_env:
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is tuple:
        item_type = args[0]
        if from_env:
            items: list[Any] = [_EnvString(p.strip()) for p in value.split(",") if p.strip()]
        elif isinstance(value, list):
            items = value
        else:
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(item_type, item, f"{key}[{i}]") for i, item in enumerate(items))
    if origin in (Mapping, dict) or tp is Mapping:
        if from_env or not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a table")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    raise ConfigError(f"{key}: unsupported setting type {tp!r}")  # pragma: no cover


# --- validation ---------------------------------------------------------------------------------


def _validate(s: Settings) -> None:
    _url("server.public_base_url", s.server.public_base_url)
    _url("twilio.api_base_url", s.twilio.api_base_url)
    _port("server.port", s.server.port)
    _port("emulator.port", s.emulator.port)
    _positive("server.max_body_bytes", s.server.max_body_bytes)
    _positive("intake.max_batch", s.intake.max_batch)
    _positive("intake.signature_window_seconds", s.intake.signature_window_seconds)
    if s.intake.default_region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"intake.default_region: unknown region {s.intake.default_region!r}")
    if not s.database.url or "://" not in s.database.url:
        raise ConfigError(f"database.url: not a database URL: {s.database.url!r}")
    if not s.database.url.startswith(("sqlite", "postgresql")):
        raise ConfigError("database.url: only sqlite:// and postgresql:// are supported")
    if not 5 <= s.twilio.ring_timeout <= 600:
        raise ConfigError("twilio.ring_timeout: must be between 5 and 600 seconds")
    if not 1 <= s.twilio.sms_validity_seconds <= 36000:
        raise ConfigError("twilio.sms_validity_seconds: must be between 1 and 36000")
    _positive("twilio.request_timeout", s.twilio.request_timeout)
    if not s.twilio.from_numbers and not s.twilio.messaging_service_sid:
        raise ConfigError("twilio.from_numbers: give at least one caller number")
    for i, number in enumerate(s.twilio.from_numbers):
        if not number.startswith("+") or not number[1:].isdigit():
            raise ConfigError(f"twilio.from_numbers[{i}]: expected an E.164 number, got {number!r}")
    if bool(s.twilio.api_key_sid) != bool(s.twilio.api_key_secret):
        raise ConfigError("twilio.api_key_secret: api_key_sid and api_key_secret go together")
    _positive("emulator.time_scale", s.emulator.time_scale)
    _positive("time_scale", s.time_scale)
    _positive("worker.poll_interval", s.worker.poll_interval)
    _positive("worker.batch_size", s.worker.batch_size)
    _positive("worker.lease_seconds", s.worker.lease_seconds)
    for key in ("calls_per_second", "sms_per_second"):
        if getattr(s.worker, key) < 0:
            raise ConfigError(f"worker.{key}: must not be negative")
    if s.voice.mode not in ("say", "offline"):
        raise ConfigError(f"voice.mode: expected 'say' or 'offline', got {s.voice.mode!r}")
    _positive("voice.sms_max_segments", s.voice.sms_max_segments)
    for level in ("high", "medium", "low"):
        policy: RiskPolicy = getattr(s.policy, level)
        if policy.call_retries < 0:
            raise ConfigError(f"policy.{level}.call_retries: must not be negative")
        _positive(f"policy.{level}.retry_every_minutes", policy.retry_every_minutes)
        for day in policy.follow_up_days:
            if day <= 0:
                raise ConfigError(f"policy.{level}.follow_up_days: days must be positive")
    for key in ("quiet_hours_start", "quiet_hours_end"):
        if not 0 <= getattr(s.policy, key) <= 23:
            raise ConfigError(f"policy.{key}: an hour from 0 to 23")
    _positive("policy.max_calls_per_hour", s.policy.max_calls_per_hour)
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log_level: expected DEBUG, INFO, WARNING or ERROR, got {s.log_level!r}")


def _url(key: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key}: expected an http(s) URL, got {value!r}")


def _port(key: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(f"{key}: expected a port from 0 to 65535, got {value}")


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key}: must be positive, got {value}")
