"""A whole service on real HTTP: the app, the worker (APScheduler clock) and the emulator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import requests
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import BaseWSGIServer, make_server

from robot.app import create_app
from robot.config import Settings
from robot.db import create_db_engine, create_session_factory
from robot.emulator.server import RunningEmulator, start_emulator_in_thread
from robot.emulator.settings import EmulatorSettings
from robot.sources import add_source
from robot.worker import run_worker

#: Emulated carrier seconds per real second: a 30 s ring passes in 0.6 s.
CARRIER_SPEED = 50.0


@dataclass
class Stack:
    settings: Settings
    base_url: str
    emulator: RunningEmulator
    sessions: sessionmaker[Session]
    api_key: str

    def post_warning(self, **fields: Any) -> dict[str, Any]:
        body = {
            "external_id": f"e2e-{time.monotonic_ns()}",
            "risk": "high",
            "fraud_type": "fake_police",
            **fields,
        }
        response = requests.post(
            f"{self.base_url}/api/v1/warnings",
            json=body,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]

    def case(self, case_id: int) -> dict[str, Any]:
        response = requests.get(
            f"{self.base_url}/api/v1/cases/{case_id}",
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=10,
        )
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]

    def control(self, method: str, path: str, **kw: Any) -> Any:
        response = requests.request(
            method, f"{self.emulator.base_url}/_emulator/{path}", timeout=10, **kw
        )
        response.raise_for_status()
        return response.json()

    def wait_for(
        self, check: Callable[[], Any], timeout: float = 20.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def start_stack(
    settings: Settings,
    tune: Callable[[Settings], Settings] | None = None,
    callees: dict[str, str] | None = None,
) -> Generator[Stack, None, None]:
    """The web app, the worker and the emulator, in threads; close() the generator to stop."""
    engine = create_db_engine(settings.database)
    sessions = create_session_factory(engine)
    with sessions.begin() as session:
        api_key = add_source(session, "e2e").api_key
    web: BaseWSGIServer = make_server(
        "127.0.0.1", 0, create_app(settings, engine=engine), threaded=True
    )
    base_url = f"http://127.0.0.1:{web.server_port}"
    emulator = start_emulator_in_thread(
        EmulatorSettings(
            account_sid=settings.twilio.account_sid,
            auth_token=settings.twilio.auth_token,
            time_scale=CARRIER_SPEED,
            callees=callees or {},
            inbound_sms_url=f"{base_url}/twilio/inbound/sms",
            inbound_voice_url=f"{base_url}/twilio/inbound/call",
        )
    )
    settings = replace(
        settings,
        server=replace(settings.server, public_base_url=base_url),
        twilio=replace(settings.twilio, api_base_url=emulator.base_url, ring_timeout=30),
        worker=replace(
            settings.worker,
            poll_interval=0.2,
            calls_per_second=0,
            max_concurrent_calls=0,
            sms_per_second=0,
        ),
    )
    if tune:
        settings = tune(settings)
    # The app reads the public URL for signatures: rebuild it with the final settings.
    web.app = create_app(settings, engine=engine)  # type: ignore[attr-defined]
    web_thread = threading.Thread(target=web.serve_forever, daemon=True)
    web_thread.start()
    stop, ready = threading.Event(), threading.Event()
    worker_thread = threading.Thread(
        target=run_worker, args=(settings,), kwargs={"stop": stop, "ready": ready}, daemon=True
    )
    worker_thread.start()
    # Timings are measured from the first warning: on a loaded machine the worker's start
    # alone took seconds of a compressed clock, and the first review came that late.
    deadline = time.monotonic() + 60
    while not ready.wait(0.05):
        if not worker_thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the worker did not start (see its log above)")
    try:
        yield Stack(settings, base_url, emulator, sessions, api_key)
    finally:
        stop.set()
        worker_thread.join(20)
        web.shutdown()
        web.server_close()
        emulator.stop()
        engine.dispose()


@pytest.fixture
def stack(settings: Settings) -> Iterator[Stack]:
    yield from start_stack(settings)
