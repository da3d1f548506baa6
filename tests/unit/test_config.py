"""Settings: file, environment, secrets files, and loud failures naming the key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from robot.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "robot.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    settings = load_settings(environ={})
    assert settings.database.url.startswith("sqlite")
    assert settings.policy.high.retry_every_minutes == 5
    assert settings.policy.medium.human_queue_minutes == 30


def test_the_example_file_loads_and_documents_every_setting() -> None:
    example = ROOT / "config.example.toml"
    load_settings(example, environ={})
    text = example.read_text()
    document = tomllib.loads(text)

    def missing(defaults: Any, table: dict[str, Any], where: str) -> list[str]:
        out = []
        for f in dataclasses.fields(defaults):
            value = getattr(defaults, f.name)
            if dataclasses.is_dataclass(value):
                out += missing(value, table.get(f.name, {}), f"{where}{f.name}.")
            elif f.name not in table and not (value is None and f"{f.name}" in text):
                # A setting whose default is "never" (None) cannot be written in TOML: it must
                # at least be explained in a comment.
                out.append(where + f.name)
        return out

    assert missing(Settings(), document, "") == []


def test_file_then_environment_then_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    path = write(
        tmp_path,
        '[twilio]\nauth_token = "from-toml"\nring_timeout = 20\n[policy.medium]\ncall_retries = 4\n',
    )
    settings = load_settings(
        path,
        environ={
            "ROBOT_TWILIO_RING_TIMEOUT": "25",
            "ROBOT_TWILIO_AUTH_TOKEN_FILE": str(secret),
            "ROBOT_TIME_SCALE": "60",
            "ROBOT_DATABASE_URL": "postgresql://db/x",
        },
    )
    assert settings.twilio.auth_token == "from-a-file"
    assert settings.twilio.ring_timeout == 25
    assert settings.time_scale == 60
    assert settings.database.url == "postgresql://db/x"
    assert settings.policy.medium.call_retries == 4
    assert settings.policy.medium.retry_every_minutes == 15  # medium's own default kept


def test_robot_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9001\n")
    assert load_settings(environ={"ROBOT_CONFIG": str(path)}).server.port == 9001


@pytest.mark.parametrize(
    ("toml", "env", "key"),
    [
        ("[server]\nport = 'eighty'\n", {}, "server.port"),
        ("[server]\nprot = 80\n", {}, "server.prot"),
        ("[twilio]\nring_timeout = 1000\n", {}, "twilio.ring_timeout"),
        ("[voice]\nmode = 'shout'\n", {}, "voice.mode"),
        ("[intake]\ndefault_region = 'XX'\n", {}, "intake.default_region"),
        ("", {"ROBOT_WORKER_BATCH_SIZE": "lots"}, "worker.batch_size"),
        (
            "",
            {"ROBOT_TWILIO_ANSWERING_MACHINE_DETECTION": "maybe"},
            "twilio.answering_machine_detection",
        ),
        ("", {"ROBOT_NOT_A_SETTING": "1"}, "ROBOT_NOT_A_SETTING"),
        (
            "",
            {"ROBOT_TWILIO_AUTH_TOKEN_FILE": "/nonexistent/secret"},
            "ROBOT_TWILIO_AUTH_TOKEN_FILE",
        ),
        ("[database]\nurl = 'mysql://x'\n", {}, "database.url"),
        ("[policy.high]\nretry_every_minutes = 0\n", {}, "policy.high.retry_every_minutes"),
        ("[server]\npublic_base_url = 'robot.example.org'\n", {}, "server.public_base_url"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_key(
    tmp_path: Path, toml: str, env: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(write(tmp_path, toml), environ=env)


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[server\n"), environ={})
