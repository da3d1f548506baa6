"""`robot worker` as a real process: it starts, wakes on new work, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from robot.config import Settings


def test_the_worker_stops_cleanly_on_sigterm(settings: Settings, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ROBOT_DATABASE_URL": settings.database.url,
        "ROBOT_TWILIO_API_BASE_URL": "http://127.0.0.1:9",
        "ROBOT_WORKER_POLL_INTERVAL": "0.2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "robot", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 20
        output = b""
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        while b"started" not in output:
            assert time.monotonic() < deadline, output
            assert process.poll() is None, output
            output += process.stdout.read() or b""
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        output += process.stdout.read() or b""
        assert b"stopping" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
