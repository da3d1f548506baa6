"""Offline speech: pyttsx3 + espeak-ng in worker processes, and the on-disk audio cache.

Rendering runs in ``python -m robot.voice.render_worker`` subprocesses, never in the web
process: espeak-ng keeps process-wide state, calls back from its own thread, and pyttsx3 prints
to stdout. A worker renders a batch of jobs with one engine; batches run in parallel.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import robot
from robot.voice.pcm import TELEPHONY_RATE

log = logging.getLogger(__name__)

#: Bump when the rendering pipeline changes so old cache entries are not served.
CACHE_VERSION = 1


class RenderError(RuntimeError):
    """Offline rendering failed (espeak-ng missing, unknown voice, worker crashed...)."""


@dataclass(frozen=True)
class OfflineVoice:
    #: espeak-ng voice name, e.g. "cmn" or "en-us".
    espeak_voice: str
    #: Words per minute.
    rate: int
    sample_rate: int = TELEPHONY_RATE


@dataclass(frozen=True)
class RenderJob:
    text: str
    voice: OfflineVoice
    output: Path


def audio_digest(text: str, voice: OfflineVoice) -> str:
    """The cache key: SHA-256 of the text and everything that changes the audio."""
    payload = json.dumps(
        {
            "version": CACHE_VERSION,
            "engine": "espeak-ng",
            "voice": voice.espeak_voice,
            "rate": voice.rate,
            "sample_rate": voice.sample_rate,
            "text": text,
        },
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def run_jobs(
    jobs: Sequence[RenderJob], *, workers: int | None = None, timeout_per_job: float = 20.0
) -> list[str | None]:
    """Render every job; the result lists None for a success or the error, in job order."""
    if not jobs:
        return []
    count = max(1, min(workers or (os.cpu_count() or 1), len(jobs), 4))
    batches = [list(range(i, len(jobs), count)) for i in range(count)]
    errors: list[str | None] = ["not rendered"] * len(jobs)
    with ThreadPoolExecutor(max_workers=count) as pool:
        results = pool.map(
            lambda batch: _run_batch([jobs[i] for i in batch], timeout_per_job), batches
        )
        for batch, batch_errors in zip(batches, results, strict=True):
            for index, error in zip(batch, batch_errors, strict=True):
                errors[index] = error
    return errors


def _run_batch(jobs: list[RenderJob], timeout_per_job: float) -> list[str | None]:
    request = {
        "jobs": [
            {
                "text": job.text,
                "voice": job.voice.espeak_voice,
                "rate": job.voice.rate,
                "sample_rate": job.voice.sample_rate,
                "output": str(job.output),
            }
            for job in jobs
        ]
    }
    env = dict(os.environ)
    repo = str(Path(robot.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "robot.voice.render_worker"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=env,
            timeout=30 + timeout_per_job * len(jobs),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [f"render worker timed out after {len(jobs)} job(s)"] * len(jobs)
    done: dict[str, str | None] = {}
    for line in proc.stdout.splitlines():
        try:
            result = json.loads(line)
        except ValueError:
            continue
        if isinstance(result, dict) and "output" in result:
            done[str(result["output"])] = None if result.get("ok") else str(result.get("error"))
    tail = proc.stderr.strip().splitlines()[-3:]
    crashed = f"render worker exited with code {proc.returncode}: {' | '.join(tail)}"
    return [done.get(str(job.output), crashed) for job in jobs]


@dataclass
class CacheReport:
    """What a cache fill did."""

    rendered: int = 0
    cached: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


class AudioCache:
    """``<digest>.wav`` files (plus a ``<digest>.json`` note of text and voice) in one directory.

    Files are written under a temporary name and renamed, so a reader never sees half a file;
    fills take a file lock so two processes starting at once do not render the same audio.
    """

    _thread_lock = threading.Lock()

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, digest: str) -> Path:
        return self.directory / f"{digest}.wav"

    def lookup(self, digest: str) -> Path | None:
        path = self.path(digest)
        return path if path.is_file() else None

    def fill(self, items: Sequence[tuple[str, OfflineVoice]]) -> CacheReport:
        """Render the (text, voice) pairs that are not cached yet."""
        started = time.monotonic()
        report = CacheReport()
        wanted: dict[str, tuple[str, OfflineVoice]] = {}
        for text, voice in items:
            wanted.setdefault(audio_digest(text, voice), (text, voice))
        with self._locked():
            missing = [d for d in wanted if self.lookup(d) is None]
            report.cached = len(wanted) - len(missing)
            jobs = [RenderJob(*wanted[d], output=self.path(d)) for d in missing]
            errors = run_jobs(jobs) if jobs else []
            for digest, job, error in zip(missing, jobs, errors, strict=True):
                if error is None:
                    report.rendered += 1
                    self._write_note(digest, job)
                else:
                    report.failed.append(f"{job.text[:40]!r} ({job.voice.espeak_voice}): {error}")
        report.seconds = time.monotonic() - started
        return report

    def _write_note(self, digest: str, job: RenderJob) -> None:
        note = {"text": job.text, "voice": job.voice.espeak_voice, "rate": job.voice.rate}
        partial = self.directory / f".{digest}.json.{os.getpid()}"
        partial.write_text(json.dumps(note, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, self.directory / f"{digest}.json")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, open(self.directory / ".render.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
