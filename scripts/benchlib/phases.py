"""Each measurement of the benchmark: start what it needs, load it, read the figures, stop."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from sqlalchemy import Engine, text

from robot.emulator.signing import compute_signature
from robot.models import Attempt, IncomingWarning

from . import data
from .http import Run, basic_auth, build, closed, host_port, open_loop, percentile
from .stack import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    Database,
    Databases,
    Proc,
    Stack,
    connections_by_child,
    cpu_seconds,
    named_cpu_seconds,
)

FROM_NUMBER = "+15005550006"
#: Emulated seconds per real second: a busy call (3 emulated seconds) ends in 3 ms.
CARRIER_SPEED = 1000.0


@dataclass
class Config:
    workdir: Path
    postgres_url: str
    databases: tuple[str, ...] = ("sqlite", "postgres")
    concurrency: int = 16
    noop_requests: int = 4000
    intake_requests: int = 3000
    #: The per-request intake (and the write floor) run in this many rounds, each between two
    #: short runs of the no-op, so that its share of the no-op compares the two in one spell
    #: of the machine (beside the intake, the no-op ran at 2,200 or 4,200/s seconds apart).
    ruler_rounds: int = 5
    ruler_requests: int = 2000
    batch_size: int = 1000
    batches: int = 20
    #: Batches in flight at once: two per web process, so that one can parse and check while
    #: the other waits on the database (with one each, a process idles during every write).
    batch_concurrency: int = 4
    dial_rate: float = 100.0
    dial_seconds: float = 15.0
    #: A light load too: the latency of the path itself, apart from any backlog.
    dial_light_rate: float = 10.0
    dial_light_seconds: float = 10.0
    emulator_requests: int = 3000
    sdk_requests: int = 2000
    dispatch_backlog: int = 6000
    dispatch_workers: tuple[int, ...] = (1, 2, 4)
    webhook_attempts: int = 2000
    scale_sizes: tuple[int, ...] = (1_000, 1_000_000)
    scale_ticks: int = 300
    pacing_rate: float = 20.0
    pacing_seconds: float = 12.0
    pacing_workers: int = 2
    #: Backlog beyond what the measured seconds can place (the limit stays saturated).
    pacing_extra_seconds: float = 10.0
    dial_warm: int = 20
    scale_sleep: float = 4.0
    warmup: int = 200
    profile: bool = False


@dataclass
class Bench:
    config: Config
    stack: Stack
    dbs: Databases
    emulator: Proc
    noop: Proc
    results: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print

    # --- helpers ------------------------------------------------------------------------------

    def env(self, db: Database, public_url: str, **extra: Any) -> dict[str, str]:
        settings: dict[str, Any] = {
            "database_url": db.url,
            "twilio_api_base_url": self.emulator.url,
            "server_public_base_url": public_url,
            # Pacing off: the figures are the service's own cost, not the provider's limit.
            "worker_calls_per_second": 0,
            "worker_max_concurrent_calls": 0,
            "worker_sms_per_second": 0,
        }
        settings.update(extra)
        return self.stack.env(**settings)

    def emulator_reset(self) -> None:
        requests.post(self.emulator.url + "/_emulator/reset", timeout=30).raise_for_status()

    def emulator_health(self) -> dict[str, Any]:
        response = requests.get(self.emulator.url + "/_emulator/health", timeout=30)
        result: dict[str, Any] = response.json()
        return result

    def call_creates(self) -> list[tuple[float, str]]:
        """(time, To) of every accepted call create the emulator received, in time order."""
        records = requests.get(self.emulator.url + "/_emulator/requests", timeout=120).json()
        found = [
            (float(r["time"]), str(r["params"].get("To")))
            for r in records
            if r["method"] == "POST" and r["path"].endswith("/Calls.json") and r["status"] == 201
        ]
        return sorted(found)

    def wait_calls(self, expected: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        calls = 0
        while time.monotonic() < deadline:
            calls = int(self.emulator_health()["calls"])
            if calls >= expected:
                return calls
            time.sleep(0.2)
        return calls

    def profiled(self, proc: Proc, label: str, seconds: float) -> Any:
        return self.stack.profile(proc, label, seconds) if self.config.profile else None

    @staticmethod
    def latency_ms(run: Run, ok: Sequence[int]) -> dict[str, float]:
        values = [s.latency * 1000 for s in run.samples if s.status in ok]
        return {
            "p50_ms": round(percentile(values, 50), 2),
            "p99_ms": round(percentile(values, 99), 2),
        }

    @staticmethod
    def wake(db: Database) -> None:
        """What the web process does after a commit: wake the workers now."""
        from robot.wakeup import Waker

        engine = db.engine()
        try:
            waker = Waker(engine)
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_notify('robot_wake', '')"))
            waker.after_commit()
        finally:
            engine.dispose()

    # --- ceilings ---------------------------------------------------------------------------

    def noop_request(self) -> bytes:
        """The no-op's request: the same single-warning POST the intake is sent."""
        url = self.noop.url + "/api/v1/warnings"
        headers = [("Authorization", "Bearer wr_x")]
        return build("POST", url, _warning(0, "noop"), headers, "application/json")

    def ceilings(self) -> None:
        cfg = self.config
        closed(self.noop.url, [self.noop_request()] * cfg.warmup, cfg.concurrency)
        reqs = [self.noop_request()] * cfg.noop_requests
        spy = self.profiled(self.noop, "noop", 3)
        meter = Meter(noop=self.noop)
        run = closed(self.noop.url, reqs, cfg.concurrency)
        _wait(spy)
        self.results["noop"] = {
            "requests": len(reqs),
            "ok": run.count(200),
            "rate_per_s": round(run.count(200) / run.elapsed, 1),
            **self.latency_ms(run, (200,)),
            **meter.per(run.count(200)),
        }
        self.log(f"  no-op endpoint: {self.results['noop']}")

        # The emulator's own create rate: raw HTTP, no callbacks, a callee that is busy.
        self.emulator_reset()
        path = f"{self.emulator.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
        auth = basic_auth(ACCOUNT_SID, AUTH_TOKEN)
        form = "To=%2B{to}&From=%2B15005550006&Twiml=%3CResponse%2F%3E"

        def create(i: int) -> bytes:
            body = form.format(to=data.phone(900_000 + i, 6)[1:]).encode()
            return build("POST", path, body, [auth], "application/x-www-form-urlencoded")

        closed(self.emulator.url, [create(i) for i in range(cfg.warmup)], cfg.concurrency)
        reqs = [create(cfg.warmup + i) for i in range(cfg.emulator_requests)]
        meter = Meter(emulator=self.emulator)
        run = closed(self.emulator.url, reqs, cfg.concurrency)
        self.results["emulator_create"] = {
            "requests": len(reqs),
            "ok": run.count(201),
            "rate_per_s": round(run.count(201) / run.elapsed, 1),
            **self.latency_ms(run, (201,)),
            **meter.per(run.count(201)),
        }
        self.log(f"  emulator creates (raw HTTP): {self.results['emulator_create']}")

        # The same through the twilio SDK from 8 threads of one process, with status callbacks
        # (to the no-op sink): the most one worker could place if the database cost nothing.
        self.emulator_reset()
        from robot.config import TwilioSettings
        from robot.providers import CallRequest
        from robot.providers.twilio import TwilioProvider

        provider = TwilioProvider(
            TwilioSettings(
                account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_base_url=self.emulator.url
            )
        )

        def place(i: int) -> None:
            to = data.phone(950_000 + i, 6)
            provider.place_call(
                CallRequest(
                    to=to,
                    from_=FROM_NUMBER,
                    twiml_url=f"{self.noop.url}/twilio/call/x{i}/twiml",
                    status_callback=f"{self.noop.url}/twilio/call/x{i}/status",
                    amd_callback=f"{self.noop.url}/twilio/call/x{i}/amd",
                    ring_timeout=30,
                )
            )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(place, range(cfg.warmup)))
            meter = Meter(emulator=self.emulator, sink=self.noop)
            cpu = time.process_time()
            started = time.perf_counter()
            list(pool.map(place, range(cfg.warmup, cfg.warmup + cfg.sdk_requests)))
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
        self.results["sdk_create"] = {
            "requests": cfg.sdk_requests,
            "threads": 8,
            "rate_per_s": round(cfg.sdk_requests / elapsed, 1),
            "sdk_cpu_ms": round(cpu * 1000 / cfg.sdk_requests, 3),
            **meter.per(cfg.sdk_requests),
        }
        self.log(f"  twilio SDK creates (8 threads): {self.results['sdk_create']}")
        time.sleep(0.5)
        self.emulator_reset()

    # --- intake -----------------------------------------------------------------------------

    def intake(self, kind: str) -> None:
        cfg = self.config
        db = self.dbs.fresh(kind, "intake")
        engine = db.engine()
        _, key = data.make_source(engine)
        web = self.stack.web(f"web-intake-{kind}", self.env(db, ""))
        url = web.url + "/api/v1/warnings"
        auth = [("Authorization", f"Bearer {key}")]
        try:
            warm, reqs = self.one_per_request(url, auth, "warm-", "s-")
            closed(web.url, warm, cfg.concurrency)
            spy = self.profiled(web, f"intake-single-{kind}", 3)
            run, ruled = self.beside_noop(kind, web, reqs, 202)
            _wait(spy)
            accepted = run.count(202)
            committed = data.count_rows(
                engine, IncomingWarning, IncomingWarning.external_id.like("s-%")
            )
            single = {
                "requests": len(reqs),
                "accepted": accepted,
                "committed": committed,
                "errors": run.errors,
                "rate_per_s": round(accepted / run.elapsed, 1),
                **self.latency_ms(run, (202,)),
                **ruled,
            }
            self.log(f"  intake one per request [{kind}]: {single}")

            batches = []
            for b in range(cfg.batches):
                items = [
                    json.loads(_warning(100_000 + b * cfg.batch_size + i, f"b-{b}-{i}"))
                    for i in range(cfg.batch_size)
                ]
                body = json.dumps({"warnings": items}).encode()
                batches.append(build("POST", url, body, auth, "application/json"))
            spy = self.profiled(web, f"intake-batch-{kind}", 3)
            meter = Meter(kind, web=web)
            spread = Spread(web)
            run = closed(web.url, batches, cfg.batch_concurrency, spread.take)
            _wait(spy)
            accepted = sum(
                json.loads(s.body).get("accepted", 0) for s in run.samples if s.status == 202
            )
            committed = data.count_rows(
                engine, IncomingWarning, IncomingWarning.external_id.like("b-%")
            )
            batch = {
                "batch_size": cfg.batch_size,
                "requests": len(batches),
                "connections": cfg.batch_concurrency,
                "accepted": accepted,
                "committed": committed,
                "errors": run.errors,
                "rate_per_s": round(accepted / run.elapsed, 1),
                **self.latency_ms(run, (202,)),
                **meter.per(accepted, "_per_warning"),
                "connections_by_process": spread.counts,
            }
            self.log(f"  intake batches of {cfg.batch_size} [{kind}]: {batch}")
            self.results.setdefault("intake", {})[kind] = {"single": single, "batch": batch}
            self.stack.stop(web)  # the floor has the cores to itself, as the intake had
            self.results["intake"][kind]["floor"] = self.write_floor(kind, db, engine, key)
        finally:
            self.stack.stop(web)
            engine.dispose()

    def write_floor(self, kind: str, db: Database, engine: Engine, key: str) -> dict[str, Any]:
        """One read and one committed write a request, nothing else (scripts.benchlib.floor)."""
        from .floor import FLOOR_TABLE, create_floor_table

        cfg = self.config
        create_floor_table(engine)
        floor = self.stack.floor(f"floor-{kind}", db.url)
        url = floor.url + "/api/v1/warnings"
        try:
            warm, reqs = self.one_per_request(
                url, [("Authorization", f"Bearer {key}")], "fw-", "f-"
            )
            closed(floor.url, warm, cfg.concurrency)
            run, ruled = self.beside_noop(kind, floor, reqs, 202)
            stored = run.count(202)
            committed = data.count_rows(engine, FLOOR_TABLE, FLOOR_TABLE.c.external_id.like("f-%"))
            result: dict[str, Any] = {
                "requests": len(reqs),
                "stored": stored,
                "committed": committed,
                "errors": run.errors,
                "rate_per_s": round(stored / run.elapsed, 1),
                **self.latency_ms(run, (202,)),
                **ruled,
            }
            self.log(f"  write floor, one read and one commit a request [{kind}]: {result}")
            return result
        finally:
            self.stack.stop(floor)

    def one_per_request(
        self, url: str, auth: list[tuple[str, str]], warm_prefix: str, prefix: str
    ) -> tuple[list[bytes], list[bytes]]:
        """Warm-up and measured requests of one warning each, every number and external id new
        (the measured ones' ids are ``prefix`` and a count, for counting what was committed)."""
        cfg = self.config

        def request(i: int, external_id: str) -> bytes:
            return build("POST", url, _warning(i, external_id), auth, "application/json")

        warm = [request(i, f"{warm_prefix}{i}") for i in range(cfg.warmup)]
        return warm, [request(10_000 + i, f"{prefix}{i}") for i in range(cfg.intake_requests)]

    def beside_noop(
        self, kind: str, proc: Proc, reqs: Sequence[bytes], ok: int
    ) -> tuple[Run, dict[str, Any]]:
        """Send ``reqs`` to ``proc`` in rounds, each between two short runs of the no-op.

        The no-op's rate changes within a run: about halved whenever all its connections land
        in one of its processes, which happens about one time in ten here. So a share of the
        no-op is only meaningful against a no-op measured in the same spell. Each round's share
        is its rate over the mean of the no-op's just before and just after it; ``of_noop`` is
        the median of the rounds'. Returns the rounds as one Run (every sample; their elapsed
        times added, the no-op's left out) and the figures: the shares, the no-op's rates, how
        the connections of each round and each no-op run were spread over the processes, and
        CPU per request over the rounds alone.
        """
        cfg = self.config
        ruler = [self.noop_request()] * cfg.ruler_requests
        closed(self.noop.url, ruler[: cfg.warmup], cfg.concurrency)

        noop_spreads: list[list[int]] = []
        spreads: list[list[int]] = []

        def noop_rate() -> float:
            spread = Spread(self.noop)
            run = closed(self.noop.url, ruler, cfg.concurrency, spread.take)
            noop_spreads.append(spread.counts)
            return run.count(200) / run.elapsed

        rounds = max(1, min(cfg.ruler_rounds, len(reqs)))
        whole = Run()
        used: dict[str, float] = {}
        noops = [noop_rate()]
        rates = []
        for i in range(rounds):
            chunk = reqs[i * len(reqs) // rounds : (i + 1) * len(reqs) // rounds]
            meter = Meter(kind, web=proc)
            spread = Spread(proc)
            run = closed(proc.url, chunk, cfg.concurrency, spread.take)
            for name, seconds in meter.used().items():
                used[name] = used.get(name, 0.0) + seconds
            spreads.append(spread.counts)
            noops.append(noop_rate())
            rates.append(run.count(ok) / run.elapsed)
            whole.samples.extend(run.samples)
            whole.errors += run.errors
            whole.ended += run.elapsed
        shares = shares_of_ruler(rates, noops)
        figures: dict[str, Any] = {
            "of_noop": round(statistics.median(shares), 3),
            "of_noop_rounds": [round(share, 3) for share in shares],
            "noop_beside_per_s": [round(rate, 1) for rate in noops],
            "connections_by_process": spreads,
            "noop_connections_by_process": noop_spreads,
            **per_unit(used, whole.count(ok)),
        }
        start_noop = self.results.get("noop", {}).get("rate_per_s")
        if start_noop:  # against the ceilings' no-op, as runs before the rounds reported it
            figures["of_start_noop"] = round(whole.count(ok) / whole.elapsed / start_noop, 3)
        return whole, figures

    # --- time to dial -----------------------------------------------------------------------

    def time_to_dial(
        self, kind: str, rate: float, seconds: float, key_: str = "time_to_dial"
    ) -> None:
        cfg = self.config
        db = self.dbs.fresh(kind, f"dial{int(rate)}")
        engine = db.engine()
        _, key = data.make_source(engine)
        self.emulator_reset()
        web = self.stack.web(f"web-dial-{kind}", self.env(db, ""))
        worker = self.stack.worker(f"worker-dial-{kind}", self.env(db, web.url))
        url = web.url + "/api/v1/warnings"
        auth = [("Authorization", f"Bearer {key}")]
        try:
            # Numbers ending in 6 are busy: the call ends at once and its callbacks come back.
            warm = [
                build("POST", url, _warning(200_000 + i, f"dw-{i}", 6), auth, "application/json")
                for i in range(cfg.dial_warm)
            ]
            open_loop(web.url, warm, 20)
            self.wait_calls(len(warm), 15)
            count = max(1, int(rate * seconds))
            phones = [data.phone(300_000 + i, 6) for i in range(count)]
            reqs = [
                build("POST", url, _warning(300_000 + i, f"d-{i}", 6), auth, "application/json")
                for i in range(count)
            ]
            spy = self.profiled(worker, f"dial{rate:g}-worker-{kind}", seconds)
            spy_web = self.profiled(web, f"dial{rate:g}-web-{kind}", seconds)
            meter = Meter(kind, web=web, worker=worker, emulator=self.emulator)
            run = open_loop(web.url, reqs, rate)
            _wait(spy)
            _wait(spy_web)
            self.wait_calls(len(warm) + count, 30 + count / 20)
            time.sleep(1.0)  # the callbacks of the last calls, and their reviews
            cpu = meter.per(count, "_per_warning")
            created = {to: t for t, to in reversed(self.call_creates())}  # first create per To
            dials, missing = [], 0
            for sample in run.samples:
                to = phones[sample.index]
                if sample.status != 202 or to not in created:
                    missing += 1
                    continue
                dials.append((created[to] - sample.wall_end) * 1000)
            result = {
                "rate_per_s": rate,
                "warnings": count,
                "accepted": run.count(202),
                "dialled": len(dials),
                "missing": missing,
                "p50_ms": round(percentile(dials, 50), 1),
                "p95_ms": round(percentile(dials, 95), 1),
                "p99_ms": round(percentile(dials, 99), 1),
                "max_ms": round(max(dials, default=0.0), 1),
                "intake_p50_ms": round(percentile([s.latency * 1000 for s in run.samples], 50), 1),
                "intake_p99_ms": round(percentile([s.latency * 1000 for s in run.samples], 99), 1),
                **cpu,
            }
            self.log(f"  time to dial at {rate:g}/s [{kind}]: {result}")
            self.results.setdefault(key_, {})[kind] = result
        finally:
            self.stack.stop(worker, web)
            engine.dispose()

    # --- dispatch ---------------------------------------------------------------------------

    def dispatch(self, kind: str, workers: int, backlog: int | None = None) -> dict[str, Any]:
        cfg = self.config
        backlog = backlog or cfg.dispatch_backlog
        db = self.dbs.fresh(kind, f"dispatch{workers}")
        engine = db.engine()
        source_id, _ = data.make_source(engine)
        self.emulator_reset()
        # Status callbacks go to the no-op sink: this measures placing, not the webhooks.
        env = self.env(db, self.noop.url)
        procs = [
            self.stack.worker(f"worker-dispatch-{kind}-{workers}-{i}", env) for i in range(workers)
        ]
        try:
            _due_backlog(engine, source_id, backlog, first_phone=400_000)
            meter = Meter(
                kind,
                emulator=self.emulator,
                sink=self.noop,
                **{f"worker{i}": p for i, p in enumerate(procs)},
            )
            self.wake(db)
            spy = self.profiled(procs[0], f"dispatch-worker-{kind}-{workers}", 4)
            # The emulator too: in this phase it, not the worker, is the busiest process.
            spy_emulator = self.profiled(self.emulator, f"dispatch-emulator-{kind}-{workers}", 4)
            calls = self.wait_calls(backlog, 30 + backlog / 50)
            cpu = meter.per(backlog)
            _wait(spy)
            _wait(spy_emulator)
            time.sleep(1.0)  # anything placed twice would show up by now
            creates = self.call_creates()
            times = [t for t, _ in creates]
            per_to = Counter(to for _, to in creates)
            twice = sum(n - 1 for n in per_to.values() if n > 1)
            with engine.connect() as conn:
                placed = conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT provider_sid) FROM attempts WHERE state = 'placed'"
                    )
                ).one()
            result = {
                "workers": workers,
                "backlog": backlog,
                "placed": len(per_to),
                "creates": calls,
                "placed_twice": twice,
                "db_placed": int(placed[0]),
                "db_distinct_sids": int(placed[1]),
                "rate_per_s": round(_rate(times), 1),
                "steady_rate_per_s": round(_rate(times, 0.1, 0.9), 1),
            }
            result["per_worker_per_s"] = round(result["rate_per_s"] / workers, 1)
            result["worker_cpu_ms"] = _workers_cpu_ms(cpu)
            result["emulator_cpu_ms"] = cpu["emulator_cpu_ms"]
            result["sink_cpu_ms"] = cpu["sink_cpu_ms"]
            for other in ("postgres_cpu_ms", "bench_cpu_ms"):
                if other in cpu:
                    result[other] = cpu[other]
            self.log(f"  dispatch [{kind}, {workers} worker(s)]: {result}")
            self.results.setdefault("dispatch", {}).setdefault(kind, {})[str(workers)] = result
            return result
        finally:
            self.stack.stop(*procs)
            engine.dispose()

    def dispatch_standin(self, kind: str, workers: int = 1) -> dict[str, Any]:
        """Workers against the provider stand-in (standin.py): the workers' own rate.

        Context for the dispatch targets, not the checks of record: the emulator's runs above
        are those. Here the creates cost the stand-in little and bring back no callbacks, so
        the rate is what the workers' own CPU and waits allow. It is counted from the
        attempts' placed_at in the database, since the stand-in keeps nothing.
        """
        backlog = self.config.dispatch_backlog
        db = self.dbs.fresh(kind, f"standin{workers}")
        engine = db.engine()
        source_id, _ = data.make_source(engine)
        standin = self.stack.standin()
        env = self.env(db, self.noop.url, twilio_api_base_url=standin.url)
        procs = [
            self.stack.worker(f"worker-standin-{kind}-{workers}-{i}", env) for i in range(workers)
        ]
        try:
            _due_backlog(engine, source_id, backlog, first_phone=400_000)
            meter = Meter(kind, standin=standin, **{f"worker{i}": p for i, p in enumerate(procs)})
            self.wake(db)
            spy = self.profiled(procs[0], f"standin-worker-{kind}-{workers}", 4)
            placed = _wait_placed(engine, backlog, 30 + backlog / 50)
            cpu = meter.per(backlog)
            _wait(spy)
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT placed_at FROM attempts WHERE state = 'placed' ORDER BY placed_at")
                ).all()
            times = [_epoch(row[0]) for row in rows]
            result: dict[str, Any] = {
                "workers": workers,
                "backlog": backlog,
                "placed": placed,
                "rate_per_s": round(_rate(times), 1),
                "steady_rate_per_s": round(_rate(times, 0.1, 0.9), 1),
                "worker_cpu_ms": _workers_cpu_ms(cpu),
                **{k: v for k, v in cpu.items() if not k.startswith("worker")},
            }
            self.log(f"  dispatch against the stand-in [{kind}, {workers} worker(s)]: {result}")
            self.results.setdefault("dispatch_standin", {}).setdefault(kind, {})[str(workers)] = (
                result
            )
            return result
        finally:
            self.stack.stop(*procs, standin)
            engine.dispose()

    # --- webhooks ---------------------------------------------------------------------------

    def webhooks(self, kind: str) -> None:
        cfg = self.config
        db = self.dbs.fresh(kind, "webhooks")
        engine = db.engine()
        source_id, _ = data.make_source(engine)
        cases = data.insert_cases(engine, source_id, cfg.webhook_attempts, first_phone=600_000)
        attempts = data.insert_attempts(
            engine, cases, due_at=datetime.now(UTC), state="placed", placed=True
        )
        web = self.stack.web(f"web-webhooks-{kind}", self.env(db, ""))
        try:
            # What a call brings back: the service asks only for "answered" and "completed".
            rounds = [("in-progress", ""), ("completed", "15")]
            reqs: list[bytes] = []
            for seq, (status, duration) in enumerate(rounds):
                for _, code, to in attempts:
                    url = f"{web.url}/twilio/call/{code}/status"
                    params = [
                        ("AccountSid", ACCOUNT_SID),
                        ("ApiVersion", "2010-04-01"),
                        ("CallSid", "CA" + code),
                        ("CallStatus", status),
                        ("Direction", "outbound-api"),
                        ("From", FROM_NUMBER),
                        ("To", to),
                        ("SequenceNumber", str(seq)),
                        ("CallbackSource", "call-progress-events"),
                        ("Timestamp", "Sat, 21 Nov 2026 10:00:00 +0000"),
                    ]
                    if duration:
                        params += [("CallDuration", duration), ("Duration", "1")]
                    headers = [("X-Twilio-Signature", compute_signature(AUTH_TOKEN, url, params))]
                    body = urlencode(params).encode()
                    reqs.append(
                        build("POST", url, body, headers, "application/x-www-form-urlencoded")
                    )
            warm = reqs[: cfg.warmup]
            closed(web.url, warm, cfg.concurrency)
            timed = reqs[cfg.warmup :]
            spy = self.profiled(web, f"webhooks-{kind}", 3)
            meter = Meter(kind, web=web)
            spread = Spread(web)
            run = closed(web.url, timed, cfg.concurrency, spread.take)
            _wait(spy)
            cpu = meter.per(run.count(200))
            finished = data.count_rows(engine, Attempt, Attempt.state == "finished")
            result = {
                "callbacks": len(timed),
                "ok": run.count(200),
                "refused": len(run.samples) - run.count(200),
                "errors": run.errors,
                "attempts_finished": finished,
                "attempts": len(attempts),
                "rate_per_s": round(run.count(200) / run.elapsed, 1),
                **self.latency_ms(run, (200,)),
                **cpu,
                "connections_by_process": spread.counts,
            }
            self.log(f"  signed status callbacks [{kind}]: {result}")
            self.results.setdefault("webhooks", {})[kind] = result
        finally:
            self.stack.stop(web)
            engine.dispose()

    # --- scale ------------------------------------------------------------------------------

    def scale(self, kind: str) -> None:
        cfg = self.config
        out: dict[str, Any] = {}
        for size in cfg.scale_sizes:
            db = self.dbs.fresh(kind, f"scale{size}")
            engine = db.engine()
            source_id, _ = data.make_source(engine)
            started = time.perf_counter()
            per_case = 5 if size >= 5 else 1
            data.insert_far_future(
                engine,
                source_id,
                size // per_case,
                per_case,
                datetime.now(UTC) + timedelta(days=30),
            )
            loaded = time.perf_counter() - started
            engine.dispose()
            figures = self._tick_cost(db)
            proc = self.stack.worker(f"worker-scale-{kind}-{size}", self.env(db, self.noop.url))
            try:
                spy = self.profiled(proc, f"scale-worker-{kind}-{size}", 3)
                time.sleep(cfg.scale_sleep)  # a few ticks and feedback runs
                _wait(spy)
                memory = _memory(proc)
            finally:
                self.stack.stop(proc)
            out[str(size)] = {"pending": size, "load_s": round(loaded, 1), **figures, **memory}
            self.log(f"  scale [{kind}, {size:,} pending]: {out[str(size)]}")
        self.results.setdefault("scale", {})[kind] = out

    def _tick_cost(self, db: Database) -> dict[str, Any]:
        """Time Worker.tick() and its parts in this process with nothing due."""
        from robot.config import load_settings
        from robot.db import create_db_engine, create_session_factory
        from robot.escalation import review_due
        from robot.models import utcnow
        from robot.worker import Worker, build_provider

        settings = load_settings(environ=self.env(db, self.noop.url))
        engine = create_db_engine(settings.database)
        sessions = create_session_factory(engine)
        worker = Worker(settings, sessions, build_provider(settings), "bench-tick")
        try:
            parts: dict[str, Callable[[], Any]] = {
                "tick": worker.tick,
                "review_due": lambda: review_due(sessions, settings, utcnow()),
                "run_commands": worker.run_commands,
                "dispatch_run_once": worker.dispatcher.run_once,
                "reconcile": worker.reconcile,
                "deliver_feedback": worker.deliver_feedback,
            }
            times: dict[str, list[float]] = {name: [] for name in parts}
            # Round-robin, so anything the database does meanwhile (autovacuum after the load)
            # falls on every part alike; the first rounds warm caches and are not counted.
            for round_ in range(3 + self.config.scale_ticks):
                for name, fn in parts.items():
                    t = time.perf_counter()
                    fn()
                    if round_ >= 3:
                        times[name].append((time.perf_counter() - t) * 1000)
            return {f"{name}_ms": round(statistics.median(v), 3) for name, v in times.items()}
        finally:
            worker.close()
            engine.dispose()

    # --- pacing -----------------------------------------------------------------------------

    def pacing(self, kind: str) -> None:
        cfg = self.config
        rate, seconds = cfg.pacing_rate, cfg.pacing_seconds
        db = self.dbs.fresh(kind, "pacing")
        engine = db.engine()
        source_id, _ = data.make_source(engine)
        self.emulator_reset()
        env = self.env(db, self.noop.url, worker_calls_per_second=rate)
        procs = [
            self.stack.worker(f"worker-pacing-{kind}-{i}", env) for i in range(cfg.pacing_workers)
        ]
        try:
            backlog = int(rate * (seconds + cfg.pacing_extra_seconds))
            _due_backlog(engine, source_id, backlog, first_phone=700_000)
            self.wake(db)
            self.wait_calls(1, 15)
            time.sleep(seconds + 0.5)
        finally:
            self.stack.stop(*procs)
            engine.dispose()
        times = [t for t, _ in self.call_creates()]
        t0 = times[0] if times else 0.0
        window = [t for t in times if t < t0 + seconds]
        result = {
            "limit_per_s": rate,
            "workers": cfg.pacing_workers,
            "seconds": seconds,
            "placed": len(window),
            "max_in_any_1s": _max_in_window(times, 1.0),
            # How close the calls came to one too many in a second: the shortest span of
            # limit + 1 calls in a row, less one second (below zero is one too many).
            "headroom_ms": _headroom_ms(times, int(rate)),
            # Where that tightest run lay and its gaps (ms): one gap short after a long one is
            # a late arrival; a run of short gaps, calls held up and let through together.
            **_tightest(times, int(rate)),
            "used_share": round(len(window) / (rate * seconds), 3),
        }
        self.log(f"  pacing [{kind}, {cfg.pacing_workers} workers]: {result}")
        self.results.setdefault("pacing", {})[kind] = result


# --- small functions ------------------------------------------------------------------------


class Meter:
    """CPU seconds the given processes (with their children) use from now on; with ``kind``
    "postgres", the PostgreSQL server's too, and always the bench's own (the load generator).
    """

    def __init__(self, kind: str = "", **procs: Proc) -> None:
        self.procs = procs
        self.postgres = kind == "postgres"
        self.start = {name: cpu_seconds(p.pid) for name, p in procs.items()}
        self.start_postgres = named_cpu_seconds("postgres") if self.postgres else 0.0
        self.start_bench = time.process_time()

    def used(self) -> dict[str, float]:
        """CPU seconds used since the start, by process: {"web": …, "bench": …}."""
        used = {name: cpu_seconds(p.pid) - self.start[name] for name, p in self.procs.items()}
        if self.postgres:
            used["postgres"] = named_cpu_seconds("postgres") - self.start_postgres
        used["bench"] = time.process_time() - self.start_bench
        return used

    def per(self, units: int, suffix: str = "") -> dict[str, float]:
        """CPU milliseconds per unit of work, by process: {"web_cpu_ms": …}."""
        return per_unit(self.used(), units, suffix)


def per_unit(used: dict[str, float], units: int, suffix: str = "") -> dict[str, float]:
    """CPU seconds by process as milliseconds per unit of work: {"web_cpu_ms": …}."""
    return {
        f"{name}_cpu_ms{suffix}": round(seconds * 1000 / max(units, 1), 3)
        for name, seconds in used.items()
    }


class Spread:
    """How this process's connections to a server were spread over the server's processes,
    fewest first: pass ``take`` as ``closed(..., before_close=...)``, which counts them after
    the last answer, while they are all still open. With 4 connections and 2 processes, a
    0 + 4 spread puts every batch on one core."""

    def __init__(self, proc: Proc) -> None:
        self.counts: list[int] = []
        self._pid = proc.pid
        self._port = host_port(proc.url)[1]

    def take(self) -> None:
        self.counts = connections_by_child(self._pid, self._port, client=os.getpid())


def shares_of_ruler(rates: Sequence[float], noops: Sequence[float]) -> list[float]:
    """Each round's rate as a share of the mean of the no-op's rates just before and just
    after it (``noops`` has one more entry than ``rates``)."""
    pairs = list(zip(rates, noops[:-1], noops[1:], strict=True))  # a ValueError if one is missing
    if any(before + after <= 0 for _, before, after in pairs):
        raise ValueError(f"the no-op answered nothing beside a round: {list(noops)}")
    return [rate / ((before + after) / 2) for rate, before, after in pairs]


def _warning(i: int, external_id: str, last_digit: int | None = None) -> bytes:
    return json.dumps(
        {
            "external_id": external_id,
            "phone": data.phone(i, last_digit),
            "risk": "high",
            "fraud_type": "fake_police",
            "trigger": "fraud_call",
            "name": "Bench Person",
            "area": "Xihu",
        }
    ).encode()


def _wait(proc: Any) -> None:
    if proc is not None:
        with contextlib.suppress(Exception):
            proc.wait(60)


def _rate(times: Sequence[float], low: float = 0.0, high: float = 1.0) -> float:
    if len(times) < 2:
        return 0.0
    first = int(low * (len(times) - 1))
    last = int(high * (len(times) - 1))
    span = times[last] - times[first]
    return (last - first) / span if span > 0 else 0.0


def _epoch(value: datetime | str) -> float:
    """A timestamp read with plain SQL: a datetime (PostgreSQL) or ISO text (SQLite), UTC."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _wait_placed(engine: Engine, expected: int, timeout: float) -> int:
    """Attempts placed so far, polled until ``expected`` or the timeout."""
    deadline = time.monotonic() + timeout
    placed = 0
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            placed = int(
                conn.execute(text("SELECT count(*) FROM attempts WHERE state = 'placed'")).scalar()
                or 0
            )
        if placed >= expected:
            break
        time.sleep(0.2)
    return placed


def _max_in_window(times: Sequence[float], width: float) -> int:
    """The most events in any half-open window [t, t + width)."""
    best, j = 0, 0
    ordered = sorted(times)
    for i, t in enumerate(ordered):
        while j < len(ordered) and ordered[j] < t + width:
            j += 1
        best = max(best, j - i)
    return best


def _tightest_start(ordered: Sequence[float], limit: int) -> int | None:
    """Where the shortest run of ``limit + 1`` events in a row starts, in time order."""
    if len(ordered) <= limit:
        return None
    return min(range(len(ordered) - limit), key=lambda i: ordered[i + limit] - ordered[i])


def _headroom_ms(times: Sequence[float], limit: int) -> float | None:
    """The shortest span of ``limit + 1`` events in a row, less one second, in ms."""
    ordered = sorted(times)
    first = _tightest_start(ordered, limit)
    if first is None:
        return None
    return round((ordered[first + limit] - ordered[first] - 1.0) * 1000, 1)


def _tightest(times: Sequence[float], limit: int) -> dict[str, Any]:
    """The tightest run of ``limit + 1`` calls in a row: its start (seconds after the first
    call) and the gaps between its calls and one call either side, in ms."""
    ordered = sorted(times)
    first = _tightest_start(ordered, limit)
    if first is None:
        return {}
    low, high = max(first - 1, 0), min(first + limit + 1, len(ordered) - 1)
    gaps = [
        round((b - a) * 1000, 1)
        for a, b in zip(ordered[low:high], ordered[low + 1 : high + 1], strict=True)
    ]
    return {"tightest_at_s": round(ordered[first] - ordered[0], 3), "tightest_gaps_ms": gaps}


def _due_backlog(engine: Engine, source_id: int, count: int, first_phone: int) -> None:
    """``count`` cases, each with a call attempt due already, to numbers that are busy (the
    call ends at once)."""
    cases = data.insert_cases(engine, source_id, count, first_phone=first_phone, last_digit=6)
    data.insert_attempts(engine, cases, due_at=datetime.now(UTC) - timedelta(seconds=1))


def _workers_cpu_ms(cpu: dict[str, float]) -> float:
    """The workers' CPU-ms together (Meter names them worker0, worker1, ...)."""
    return round(sum(v for k, v in cpu.items() if k.startswith("worker")), 3)


def _memory(proc: Proc) -> dict[str, float]:
    from .stack import memory_mb

    found = memory_mb(proc.pid)
    return {
        "worker_rss_mb": round(found["rss_mb"], 1),
        "worker_peak_mb": round(found["peak_mb"], 1),
    }
