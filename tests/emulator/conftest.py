from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twilio.rest import Client

from robot.emulator import EmulatorSettings, RunningEmulator, start_emulator_in_thread

from .support import ACCOUNT_SID, AUTH_TOKEN, ServiceStub

TIME_SCALE = 50.0


@pytest.fixture
def service() -> Iterator[ServiceStub]:
    stub = ServiceStub().start()
    yield stub
    stub.stop()


@pytest.fixture
def make_emulator(service: ServiceStub) -> Iterator[Callable[..., RunningEmulator]]:
    started: list[RunningEmulator] = []

    def make(**overrides: Any) -> RunningEmulator:
        values: dict[str, Any] = {
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "time_scale": TIME_SCALE,
            "inbound_sms_url": service.url("/sms/inbound"),
            "inbound_voice_url": service.url("/voice/inbound"),
        }
        values.update(overrides)
        emulator = start_emulator_in_thread(EmulatorSettings(**values))
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(
    request: pytest.FixtureRequest, make_emulator: Callable[..., RunningEmulator]
) -> RunningEmulator:
    # A test that checks a call's length in emulated seconds asks for a slower clock: at 50,
    # each 20 ms a loaded machine is late adds a whole emulated second.
    marker = request.node.get_closest_marker("time_scale")
    return make_emulator(time_scale=marker.args[0]) if marker else make_emulator()


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(
        emulator: RunningEmulator,
        username: str = ACCOUNT_SID,
        password: str = AUTH_TOKEN,
        account_sid: str | None = None,
    ) -> Client:
        client = Client(username, password, account_sid=account_sid, environment={})
        client.api.base_url = emulator.base_url
        clients.append(client)
        return client

    yield make
    for client in clients:
        session = getattr(client.http_client, "session", None)
        if session is not None:
            session.close()


@pytest.fixture
def client(emulator: RunningEmulator, make_client: Callable[..., Client]) -> Client:
    return make_client(emulator)
