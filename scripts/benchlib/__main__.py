"""``scripts/bench``: run the real processes, measure, compare with the targets, write results.

    scripts/bench                       # the full run (a few minutes)
    scripts/bench --smoke               # tiny counts, SQLite only: checks the bench still works
    scripts/bench --only intake,dial    # some measurements only
    scripts/bench --profile             # py-spy (collapsed stacks) of each server while loaded
    scripts/bench --profile --gil       # the same, only samples holding the GIL (CPU, not waits)

See docs/performance.md for what each figure means and the latest results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .phases import CARRIER_SPEED, Bench, Config
from .report import evaluate, render
from .stack import ROOT, Databases, Stack

PHASES = ("ceilings", "intake", "dial", "dispatch", "standin", "webhooks", "scale", "pacing")


def source() -> dict[str, Any]:
    """The commit measured, and whether the work tree had changes on top of it (the figures
    then belong to no commit)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    postgres = ""
    with_psql = shutil.which("psql")
    if with_psql:
        try:
            postgres = subprocess.run(
                [with_psql, "--version"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    import sqlite3

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "postgres_client": postgres,
    }


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny counts, SQLite only (about a minute)"
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(PHASES)}"
    )
    parser.add_argument(
        "--databases", default="", help="comma-separated: sqlite,postgres (default: both)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "ROBOT_BENCH_POSTGRES_URL",
            os.environ.get("ROBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        ),
        help="a PostgreSQL server to create throwaway databases on",
    )
    parser.add_argument("--output", help="results file (default: var/bench/results-<time>.json)")
    parser.add_argument("--profile", action="store_true", help="py-spy each server under load")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="with --profile: keep only samples that hold the GIL (Python's CPU, not its waits)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, databases)")
    parser.add_argument(
        "--reuse-port",
        choices=("on", "off"),
        default=None,
        help="server.reuse_port for the web, the no-op and the floor (default: the product's)",
    )
    return parser.parse_args(argv)


def config_for(args: argparse.Namespace, workdir: Path) -> Config:
    config = Config(workdir=workdir, postgres_url=args.postgres_url, profile=args.profile)
    if args.smoke:
        config = Config(
            workdir=workdir,
            postgres_url=args.postgres_url,
            databases=("sqlite",),
            concurrency=8,
            noop_requests=300,
            intake_requests=200,
            ruler_rounds=3,
            ruler_requests=150,
            batch_size=100,
            batches=3,
            dial_rate=50.0,
            dial_seconds=1.0,
            dial_light_rate=10.0,
            dial_light_seconds=0.0,
            emulator_requests=200,
            sdk_requests=100,
            dispatch_backlog=200,
            dispatch_workers=(1,),
            webhook_attempts=100,
            scale_sizes=(100, 2_000),
            scale_ticks=5,
            pacing_rate=10.0,
            pacing_seconds=2.0,
            pacing_workers=2,
            pacing_extra_seconds=1.0,
            dial_warm=3,
            scale_sleep=1.0,
            warmup=20,
            profile=args.profile,
        )
    if args.databases:
        config.databases = tuple(d.strip() for d in args.databases.split(",") if d.strip())
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    only = [p.strip() for p in args.only.split(",") if p.strip()] or list(PHASES)
    unknown = sorted(set(only) - set(PHASES))
    if unknown:
        print(f"unknown measurement: {', '.join(unknown)}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = Path(args.output) if args.output else ROOT / "var" / "bench" / f"results-{stamp}.json"
    workdir = Path(tempfile.mkdtemp(prefix="robot-bench-"))
    config = config_for(args, workdir)
    dbs = Databases(workdir, config.postgres_url)
    if "postgres" in config.databases and not dbs.postgres_available():
        print(f"PostgreSQL unreachable at {config.postgres_url}: running on SQLite only")
        config.databases = tuple(d for d in config.databases if d != "postgres")
    stack = Stack(
        workdir,
        profile_dir=(output.parent / f"profile-{stamp}") if args.profile else None,
        profile_gil=args.gil,
        reuse_port=None if args.reuse_port is None else args.reuse_port == "on",
    )
    results: dict[str, Any] = {
        "started": stamp,
        "command": "scripts/bench " + " ".join(sys.argv[1:] if argv is None else argv),
        **source(),
        "machine": machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "reuse_port": stack.server_reuse_port(),
        "failures": [],
    }
    started = time.monotonic()
    print(f"bench: work dir {workdir}; databases: {', '.join(config.databases)}")
    try:
        emulator = stack.emulator(CARRIER_SPEED)
        noop = stack.noop()
        bench = Bench(config, stack, dbs, emulator, noop, results)
        plan: list[tuple[str, Any]] = []
        for phase in PHASES:
            if phase not in only:
                continue
            if phase == "ceilings":
                plan.append(("ceilings", bench.ceilings))
            for kind in config.databases:
                if phase == "intake":
                    plan.append((f"intake [{kind}]", lambda k=kind: bench.intake(k)))
                elif phase == "dial":
                    plan.append(
                        (
                            f"time to dial [{kind}]",
                            lambda k=kind: bench.time_to_dial(
                                k, config.dial_rate, config.dial_seconds
                            ),
                        )
                    )
                    if config.dial_light_seconds <= 0:
                        continue
                    plan.append(
                        (
                            f"time to dial, light load [{kind}]",
                            lambda k=kind: bench.time_to_dial(
                                k,
                                config.dial_light_rate,
                                config.dial_light_seconds,
                                "time_to_dial_light",
                            ),
                        )
                    )
                elif phase == "dispatch":
                    counts = config.dispatch_workers if kind == "postgres" else (1,)
                    for n in counts:
                        plan.append(
                            (f"dispatch [{kind}, {n}]", lambda k=kind, n=n: bench.dispatch(k, n))
                        )
                elif phase == "standin":
                    # One worker, and on PostgreSQL two: does the worker scale when the
                    # provider is not the busiest process?
                    for n in (1, 2) if kind == "postgres" else (1,):
                        plan.append(
                            (
                                f"dispatch, stand-in provider [{kind}, {n}]",
                                lambda k=kind, n=n: bench.dispatch_standin(k, n),
                            )
                        )
                elif phase == "webhooks":
                    plan.append((f"webhooks [{kind}]", lambda k=kind: bench.webhooks(k)))
                elif phase == "scale":
                    plan.append((f"scale [{kind}]", lambda k=kind: bench.scale(k)))
            if phase == "pacing":
                kind = "postgres" if "postgres" in config.databases else config.databases[0]
                plan.append((f"pacing [{kind}]", lambda k=kind: bench.pacing(k)))
        for label, step in plan:
            print(f"- {label}")
            step_started = time.monotonic()
            try:
                step()
            except Exception as exc:
                traceback.print_exc()
                results["failures"].append(f"{label}: {type(exc).__name__}: {exc}")
            print(f"  ({time.monotonic() - step_started:.1f} s)")
    finally:
        stack.stop()
        dbs.cleanup()
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["targets"] = evaluate(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(render(results))
    print(f"\nresults written to {output}")
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
