"""The bench's machine bound: what the cores allow at the CPU cost a run measured."""

from __future__ import annotations

import pytest

from scripts.benchlib.phases import _headroom_ms, shares_of_ruler
from scripts.benchlib.report import cpu_ms, emulator_bound, evaluate, machine_bound


def test_the_cost_adds_every_process_but_nothing_else() -> None:
    result = {"web_cpu_ms": 1.5, "postgres_cpu_ms_per_warning": 0.25, "bench_cpu_ms": 0.25}
    assert cpu_ms({**result, "rate_per_s": 900.0, "p50_ms": 3.0}) == 2.0


def test_a_throughput_is_bounded_by_every_core_busy_at_its_cost() -> None:
    # 2 cores = 2000 CPU-ms a second; 2 CPU-ms a request: at most 1000 a second.
    assert "at most 1,000/s at 2.00 CPU-ms" in machine_bound({"web_cpu_ms": 2.0}, cpus=2)


def test_a_fixed_rate_needs_its_share_of_the_cores() -> None:
    # 100 a second at 30 CPU-ms each is 3000 CPU-ms a second: 150% of 2 cores.
    assert "needs 150% of 2 cores" in machine_bound({"web_cpu_ms": 30.0}, cpus=2, rate=100)


def test_no_cost_measured_gives_no_bound() -> None:
    assert machine_bound({"rate_per_s": 5.0}, cpus=2) == ""


def test_a_round_is_measured_against_the_no_op_on_either_side_of_it() -> None:
    # The machine slowed down: the no-op went 4000 -> 2000 -> 3000 a second.
    assert shares_of_ruler([1500.0, 1000.0], [4000.0, 2000.0, 3000.0]) == [0.5, 0.4]
    with pytest.raises(ValueError):
        shares_of_ruler([1500.0, 1000.0], [4000.0, 2000.0])
    with pytest.raises(ValueError, match="no-op answered nothing"):
        shares_of_ruler([1500.0], [0.0, 0.0])


def test_the_intake_is_judged_by_its_share_of_the_no_op_beside_it() -> None:
    # 1,500/s is 37.5% of the no-op at the start of the run (4,000/s), but 52% of the no-op
    # measured around it, in a slower spell: the target is judged on the latter.
    single = {
        "rate_per_s": 1500.0,
        "p50_ms": 9.0,
        "p99_ms": 20.0,
        "web_cpu_ms": 1.0,
        "of_noop": 0.52,
        "of_noop_rounds": [0.49, 0.52, 0.55],
        "noop_beside_per_s": [2800.0, 2900.0, 3000.0, 2700.0],
        "of_start_noop": 0.375,
    }
    results = {"machine": {"cpus": 2}, "noop": {"rate_per_s": 4000.0}}
    [row] = evaluate({**results, "intake": {"sqlite": {"single": single}}})
    assert row["met"] is True
    assert (
        "52% of the no-op beside it (rounds 49%, 52%, 55%; the no-op 2,700-3,000/s)"
        in (row["measured"])
    )
    [row] = evaluate({**results, "intake": {"sqlite": {"single": {**single, "of_noop": 0.49}}}})
    assert row["met"] is False


def test_headroom_is_the_tightest_run_of_one_more_than_the_limit() -> None:
    # At 2 a second, 3 in a row must span a second; 0.0, 0.5, 0.9 spans 0.9 s: 100 ms short.
    assert _headroom_ms([0.0, 0.5, 0.9, 2.0, 2.6, 3.3], limit=2) == -100.0
    assert _headroom_ms([0.0, 0.6, 1.2, 1.8], limit=2) == 200.0
    assert _headroom_ms([0.0, 0.5], limit=2) is None


def test_the_pacing_line_says_how_close_it_came() -> None:
    pacing = {
        "limit_per_s": 20.0,
        "workers": 2,
        "seconds": 12.0,
        "placed": 234,
        "max_in_any_1s": 20,
        "headroom_ms": 8.1,
        "used_share": 0.975,
    }
    results = {"machine": {"cpus": 2}, "pacing": {"postgres": pacing}}
    never_above, used = evaluate(results)
    assert never_above["met"] and "21 in a row spanned 1 s +8.1 ms" in never_above["measured"]
    assert used["met"] and "97.5%" in used["measured"]


def test_the_emulator_one_process_caps_dispatch_at_one_core() -> None:
    # The emulator spends 2.5 CPU-ms an attempt: one core (1000 CPU-ms a second) is 400/s,
    # whatever the machine's cores allow for the whole.
    one = {
        "workers": 1,
        "backlog": 10,
        "placed": 10,
        "rate_per_s": 300.0,
        "per_worker_per_s": 300.0,
        "worker_cpu_ms": 1.0,
        "emulator_cpu_ms": 2.5,
    }
    two = {**one, "workers": 2, "rate_per_s": 380.0, "emulator_cpu_ms": 2.0}
    rows = evaluate({"machine": {"cpus": 4}, "dispatch": {"postgres": {"1": one, "2": two}}})
    by_target = {row["target"]: row["measured"] for row in rows}
    first = by_target["dispatch, one worker [postgres] >= 500 attempts/s"]
    assert "cores allow at most 1,143/s" in first  # 4 cores at 3.5 CPU-ms
    assert "the emulator (one process) allows at most 400/s at 2.50 CPU-ms" in first
    # The two workers' line: "1.5x needs" is at one worker's cost (what 1.5x would take if the
    # cost stayed), but the emulator's bound is the two workers' run's own, since the
    # emulator's cost an attempt changes with the creates in flight.
    ratio = by_target["2 workers [postgres] >= 1.5x one worker"]
    assert "1.5x needs 39% of 4 cores at 3.5 CPU-ms" in ratio
    assert "the emulator (one process) allows at most 500/s at 2.00 CPU-ms" in ratio
    assert emulator_bound({"worker_cpu_ms": 1.0}) == ""


def test_the_stand_in_line_gives_the_worker_its_own_bound_beside_the_target() -> None:
    # Against the stand-in the worker spends 2.0 CPU-ms an attempt: one core allows 500/s.
    # The line is context (met is None): the check of record stays the emulator's run.
    standin = {
        "backlog": 10,
        "placed": 10,
        "rate_per_s": 450.0,
        "worker_cpu_ms": 2.0,
        "standin_cpu_ms": 0.5,
        "postgres_cpu_ms": 0.5,
    }
    two = {**standin, "workers": 2, "rate_per_s": 630.0, "worker_cpu_ms": 1.5}
    results = {"machine": {"cpus": 2}, "dispatch_standin": {"postgres": {"1": standin, "2": two}}}
    rows = evaluate(results)
    assert [row["met"] for row in rows] == [None, None]
    measured = rows[0]["measured"]
    assert rows[0]["target"] == "(context) dispatch, one worker, provider stand-in [postgres]"
    assert measured.startswith("450/s (10/10 placed)")
    assert "the worker at 2.00 CPU-ms an attempt: at most 500/s on one core" in measured
    assert "cores allow at most 667/s at 3.00 CPU-ms" in measured  # 2 cores, every process
    # Two workers against the stand-in: how they scale when the provider is not the limit.
    assert rows[1]["target"] == "(context) 2 workers [postgres], provider stand-in"
    assert rows[1]["measured"].startswith("630/s vs 450/s = 1.40x; cores allow at most 800/s")
