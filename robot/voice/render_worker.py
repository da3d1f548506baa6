"""Render speech in a child process: ``python -m robot.voice.render_worker``.

Reads ``{"jobs": [{"text", "voice", "rate", "sample_rate", "output"}, ...]}`` as JSON on stdin
and writes one JSON line per job to stdout: ``{"output", "ok": true, "seconds"}`` or
``{"output", "ok": false, "error"}``. Exits 1 if any job failed.

pyttsx3's espeak driver hands back espeak-ng's native audio (22050 Hz) as a WAV file; each job
is resampled to ``sample_rate`` and written to ``output`` under a temporary name first.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, TextIO

from robot.voice.pcm import read_wav, resample, to_pcm16, write_wav


def main(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    request = json.load(stdin)
    # pyttsx3 reports each saved file with print(); keep our stdout for results only.
    with contextlib.redirect_stdout(sys.stderr):
        speaker = _Engine()
        all_ok = True
        for job in request["jobs"]:
            try:
                seconds = _render(speaker, job)
                result: dict[str, Any] = {"output": job["output"], "ok": True, "seconds": seconds}
            except Exception as exc:  # report and go on with the next job
                all_ok = False
                result = {"output": job["output"], "ok": False, "error": f"{exc}"}
            stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
            stdout.flush()
    return 0 if all_ok else 1


class _Engine:
    """pyttsx3's espeak driver, made to wait for its audio.

    Its runAndWait() may return as soon as espeak-ng has *started*: synthesis is asynchronous
    and the file is written from espeak's callback thread, which then pumps pyttsx3's command
    queue itself. Starting the next job before that thread is done lets it run our next
    commands, cancelling the new synthesis (an empty file). So after runAndWait we block in
    espeak_Synchronize() until the callback has returned, then check "finished-utterance" and
    any "error" events (errors of queued property changes are only reported that way).
    """

    def __init__(self) -> None:
        import pyttsx3
        from pyttsx3.drivers import _espeak

        self.engine = pyttsx3.init("espeak")
        self.synchronize = _espeak.Synchronize
        self.finished = threading.Event()
        self.errors: list[BaseException] = []
        self.engine.connect("finished-utterance", lambda **_: self.finished.set())
        self.engine.connect("error", lambda **kw: self.errors.append(kw["exception"]))
        self.voices: dict[str, str] = {}
        for voice in self.engine.getProperty("voices"):
            for key in (*voice.languages, voice.id.rsplit("/", 1)[-1], voice.id):
                self.voices.setdefault(str(key).lower(), voice.id)

    def save(self, text: str, voice: str, rate: int, path: Path, timeout: float) -> None:
        voice_id = self.voices.get(voice.lower())
        if voice_id is None:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.finished.clear()
        self.errors.clear()
        self.engine.setProperty("voice", voice_id)
        self.engine.setProperty("rate", rate)
        self.engine.save_to_file(text, str(path))
        self.engine.runAndWait()
        self.synchronize()
        if not self.finished.wait(timeout):
            raise RuntimeError(f"espeak-ng did not finish within {timeout:.0f} s")
        if self.errors:
            raise RuntimeError(f"espeak-ng: {self.errors[0]}")


def _render(speaker: _Engine, job: dict[str, Any]) -> float:
    text = str(job["text"]).strip()
    if not text:
        raise ValueError("nothing to say")
    output = Path(job["output"])
    rate = int(job["sample_rate"])
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="robot-voice-") as tmp:
        native = Path(tmp) / "native.wav"
        speaker.save(text, str(job["voice"]), int(job["rate"]), native, timeout=10.0)
        if not native.is_file():
            raise RuntimeError("espeak-ng produced no audio")
        samples, native_rate = read_wav(native)
    if not samples:
        raise RuntimeError("espeak-ng produced empty audio")
    pcm = to_pcm16(resample(samples, native_rate, rate))
    partial = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    write_wav(partial, pcm, rate)
    os.replace(partial, output)
    return len(pcm) / rate


if __name__ == "__main__":
    sys.exit(main())
