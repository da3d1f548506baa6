"""The benchmark still runs end to end: ``scripts/bench --smoke`` (tiny counts, SQLite, about a minute).

Only that it works and that what it checks holds (everything accepted is committed, nothing is
placed twice); the figures themselves depend on the machine and live in docs/performance.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(200)
def test_the_bench_runs_and_reports_every_measurement(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "scripts.benchlib", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=190,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads(output.read_text())
    assert results["failures"] == []
    # The figures name the commit they measured (None only outside a git work tree).
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert results["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert results["seconds"] < 150  # about a minute here; CI machines have been 1.5x slower

    assert results["noop"]["ok"] == results["noop"]["requests"]
    assert results["emulator_create"]["ok"] == results["emulator_create"]["requests"]
    intake = results["intake"]["sqlite"]
    for kind in ("single", "batch"):
        assert intake[kind]["accepted"] == intake[kind]["committed"] > 0
    # The share of the no-op is the median of rounds, each between two runs of the no-op.
    for result in (intake["single"], intake["floor"]):
        rounds = result["of_noop_rounds"]
        assert len(rounds) == 3 and len(result["noop_beside_per_s"]) == 4
        # Each run's 8 connections, counted in the 2 processes of the no-op and of the server.
        assert [sum(s) for s in result["noop_connections_by_process"]] == [8] * 4
        assert [sum(s) for s in result["connections_by_process"]] == [8] * 3
        assert result["of_noop"] == sorted(rounds)[1] > 0
    # Every batch connection, counted in the web's 2 processes.
    config = results["config"]
    batch_connections = min(config["batch_concurrency"], config["batches"])
    assert sum(intake["batch"]["connections_by_process"]) == batch_connections
    assert len(intake["batch"]["connections_by_process"]) == 2
    floor = intake["floor"]
    assert floor["stored"] == floor["committed"] == floor["requests"] > 0
    dial = results["time_to_dial"]["sqlite"]
    assert dial["missing"] == 0 and dial["dialled"] == dial["warnings"]
    dispatch = results["dispatch"]["sqlite"]["1"]
    assert dispatch["placed"] == dispatch["backlog"] and dispatch["placed_twice"] == 0
    # The same backlog against the provider stand-in, counted from the database.
    standin = results["dispatch_standin"]["sqlite"]["1"]
    assert standin["placed"] == standin["backlog"] and standin["rate_per_s"] > 0
    assert standin["worker_cpu_ms"] > 0 and standin["standin_cpu_ms"] > 0
    hooks = results["webhooks"]["sqlite"]
    assert hooks["refused"] == 0 and hooks["attempts_finished"] == hooks["attempts"]
    assert sum(hooks["connections_by_process"]) == config["concurrency"]
    scale = results["scale"]["sqlite"]
    assert len(scale) == 2 and all(
        s["tick_ms"] > 0 and s["worker_peak_mb"] > 0 for s in scale.values()
    )
    pacing = results["pacing"]["sqlite"]
    assert pacing["placed"] > 0 and pacing["max_in_any_1s"] > 0
    # Every target was evaluated (met or not: that depends on the machine).
    assert len(results["targets"]) >= 8
    # Throughputs say what the cores would allow at the cost measured (CPU-bound or not).
    bounded = [t for t in results["targets"] if "cores allow at most" in t["measured"]]
    assert len(bounded) >= 4
    assert "MET" in done.stdout
