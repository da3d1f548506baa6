"""The bench's machine bound: what the cores allow at the CPU cost a run measured."""

from __future__ import annotations

from scripts.benchlib.report import cpu_ms, evaluate, machine_bound


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


def test_an_intake_run_without_the_ceilings_is_reported_not_judged() -> None:
    single = {"rate_per_s": 400.0, "p50_ms": 9.0, "p99_ms": 20.0, "web_cpu_ms": 4.0}
    results = {"machine": {"cpus": 2}, "intake": {"sqlite": {"single": single}}}
    [row] = evaluate(results)
    assert row["met"] is None and "no no-op in this run" in row["measured"]
