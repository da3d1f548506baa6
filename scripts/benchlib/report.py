"""The issue's targets, checked against a run's results, and the table printed at the end."""

from __future__ import annotations

from typing import Any


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def cpu_ms(result: dict[str, Any]) -> float:
    """CPU milliseconds per unit of work, all measured processes together (the servers, the
    emulator, PostgreSQL, the load generator)."""
    return sum(v for k, v in result.items() if "_cpu_ms" in k and isinstance(v, (int, float)))


def machine_bound(result: dict[str, Any], cpus: int, rate: float | None = None) -> str:
    """What the machine's cores allow at the CPU cost this run measured: for a throughput, the
    most per second with every core busy; for a fixed ``rate``, the share of the cores it needs.
    A result near its bound is limited by the machine, not by waits or locks."""
    cost = cpu_ms(result)
    if cost <= 0 or cpus <= 0:
        return ""
    if rate is not None:
        return f"; needs {rate * cost / (cpus * 10):.0f}% of {cpus} cores at {cost:.1f} CPU-ms each"
    return f"; cores allow at most {cpus * 1000 / cost:,.0f}/s at {cost:.2f} CPU-ms each"


def emulator_bound(result: dict[str, Any]) -> str:
    """What the emulator allows at the cost this run measured: its Python work runs in one
    process, so about one core (1000 CPU-ms a second) however many cores the machine has.
    Twilio itself costs this machine nothing, so a rate near this bound is the stand-in's limit,
    not the worker's. Its cost per attempt falls with more creates in flight, so the bound
    holds for the run it comes from (two workers get their own, from their run)."""
    cost = result.get("emulator_cpu_ms")
    if not isinstance(cost, (int, float)) or cost <= 0:
        return ""
    return f"; the emulator (one process) allows at most {1000 / cost:,.0f}/s at {cost:.2f} CPU-ms"


def worker_bound(result: dict[str, Any]) -> str:
    """What one worker process allows at its own measured cost, on a core of its own: its
    Python work holds one GIL, so about 1000 CPU-ms a second."""
    cost = result.get("worker_cpu_ms")
    if not isinstance(cost, (int, float)) or cost <= 0:
        return ""
    return f"; the worker at {cost:.2f} CPU-ms an attempt: at most {1000 / cost:,.0f}/s on one core"


def _versus_noop(result: dict[str, Any]) -> str:
    """The share of the no-op measured beside it (scripts.benchlib.phases.Bench.beside_noop)."""
    rounds = ", ".join(f"{share:.0%}" for share in result["of_noop_rounds"])
    noops = result["noop_beside_per_s"]
    return (
        f"= {result['of_noop']:.0%} of the no-op beside it (rounds {rounds};"
        f" the no-op {min(noops):,.0f}-{max(noops):,.0f}/s) "
    )


def _spread(result: dict[str, Any]) -> str:
    """How the connections were spread over the web processes (phases.Spread)."""
    counts = result.get("connections_by_process")
    return f"; connections by process {' + '.join(map(str, counts))}" if counts else ""


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: what it asks, what this run measured, met or not (None: not run)."""
    rows: list[dict[str, Any]] = []
    cpus = int(_get(results, "machine", "cpus") or 0)

    def add(target: str, measured: str, met: bool | None, bound: str = "") -> None:
        rows.append({"target": target, "measured": measured + bound, "met": met})

    for kind in ("sqlite", "postgres"):
        single = _get(results, "intake", kind, "single")
        if single:
            add(
                f"intake one per request [{kind}] >= 50% of no-op",
                f"{single['rate_per_s']:.0f}/s {_versus_noop(single)}"
                f"(p50 {single['p50_ms']} ms, p99 {single['p99_ms']} ms)",
                single["of_noop"] >= 0.5,
                machine_bound(single, cpus),
            )
        floor = _get(results, "intake", kind, "floor")
        if floor:
            # Context, not a target: how far one read and one commit alone get (floor.py).
            of_floor = f"; the intake ran at {single['rate_per_s'] / floor['rate_per_s']:.0%} of it"
            add(
                f"(context) write floor, one read and one commit [{kind}]",
                f"{floor['rate_per_s']:.0f}/s {_versus_noop(floor)}".rstrip()
                + (of_floor if single and floor["rate_per_s"] else ""),
                None,
                machine_bound(floor, cpus),
            )
        batch = _get(results, "intake", kind, "batch")
        if batch:
            add(
                f"intake batches of {batch['batch_size']} [{kind}] >= 10,000/s",
                f"{batch['rate_per_s']:.0f}/s (p50 {batch['p50_ms']} ms, p99 {batch['p99_ms']} ms"
                f"{_spread(batch)})",
                batch["rate_per_s"] >= 10_000,
                machine_bound(batch, cpus),
            )
    for kind in ("sqlite", "postgres"):
        dial = _get(results, "time_to_dial", kind)
        if dial:
            add(
                f"time to dial at {dial['rate_per_s']:g}/s [{kind}]: p50 <= 20 ms, p99 <= 100 ms",
                f"p50 {dial['p50_ms']} ms, p95 {dial['p95_ms']} ms, p99 {dial['p99_ms']} ms"
                f" ({dial['dialled']}/{dial['warnings']} dialled)",
                dial["p50_ms"] <= 20 and dial["p99_ms"] <= 100 and dial["missing"] == 0,
                machine_bound(dial, cpus, dial["rate_per_s"]),
            )
    for kind in ("sqlite", "postgres"):
        light = _get(results, "time_to_dial_light", kind)
        if light:
            add(
                f"(context) time to dial at {light['rate_per_s']:g}/s [{kind}]",
                f"p50 {light['p50_ms']} ms, p95 {light['p95_ms']} ms, p99 {light['p99_ms']} ms"
                f" ({light['dialled']}/{light['warnings']} dialled)",
                None,
            )
    for kind in ("sqlite", "postgres"):
        one = _get(results, "dispatch", kind, "1")
        if one:
            add(
                f"dispatch, one worker [{kind}] >= 500 attempts/s",
                f"{one['per_worker_per_s']:.0f}/s ({one['placed']}/{one['backlog']} placed)",
                one["per_worker_per_s"] >= 500,
                machine_bound(one, cpus) + emulator_bound(one),
            )
        standin = _get(results, "dispatch_standin", kind, "1")
        if standin:
            # Context, not a target: the same worker against a provider that costs next to
            # nothing (standin.py), so what is left is the worker's own rate and cost.
            add(
                f"(context) dispatch, one worker, provider stand-in [{kind}]",
                f"{standin['rate_per_s']:.0f}/s ({standin['placed']}/{standin['backlog']} placed)"
                + worker_bound(standin),
                None,
                machine_bound(standin, cpus),
            )
    one = _get(results, "dispatch", "postgres", "1")
    two = _get(results, "dispatch", "postgres", "2")
    four = _get(results, "dispatch", "postgres", "4")
    if one and two:
        ratio = two["rate_per_s"] / one["rate_per_s"] if one["rate_per_s"] else 0.0
        add(
            "2 workers [postgres] >= 1.5x one worker",
            f"{two['rate_per_s']:.0f}/s vs {one['rate_per_s']:.0f}/s = {ratio:.2f}x",
            ratio >= 1.5,
            # 1.5x at the cost one worker's attempts had (all processes, the emulator included)
            machine_bound(one, cpus, 1.5 * one["rate_per_s"]).replace("needs", "1.5x needs")
            + emulator_bound(two),
        )
    standin_one = _get(results, "dispatch_standin", "postgres", "1")
    standin_two = _get(results, "dispatch_standin", "postgres", "2")
    if standin_one and standin_two:
        # Context: the scaling with a provider that is not the busiest process on the cores.
        rate_one = standin_one["rate_per_s"]
        ratio = standin_two["rate_per_s"] / rate_one if rate_one else 0.0
        add(
            "(context) 2 workers [postgres], provider stand-in",
            f"{standin_two['rate_per_s']:.0f}/s vs {rate_one:.0f}/s = {ratio:.2f}x",
            None,
            machine_bound(standin_two, cpus),
        )
    if four:
        add(
            "4 workers [postgres]: zero attempts placed twice",
            f"{four['placed_twice']} twice, {four['placed']}/{four['backlog']} placed, "
            f"{four['rate_per_s']:.0f}/s",
            four["placed_twice"] == 0 and four["placed"] == four["backlog"],
        )
    for kind in ("sqlite", "postgres"):
        hooks = _get(results, "webhooks", kind)
        if hooks:
            add(
                f"signed status callbacks [{kind}] >= 1,500/s",
                f"{hooks['rate_per_s']:.0f}/s ({hooks['refused']} refused, "
                f"p50 {hooks['p50_ms']} ms, p99 {hooks['p99_ms']} ms{_spread(hooks)})",
                hooks["rate_per_s"] >= 1500 and hooks["refused"] == 0,
                machine_bound(hooks, cpus),
            )
    for kind in ("sqlite", "postgres"):
        scale = _get(results, "scale", kind)
        if scale and len(scale) >= 2:
            sizes = sorted(scale, key=int)
            small, big = scale[sizes[0]], scale[sizes[-1]]
            ratio = big["tick_ms"] / small["tick_ms"] if small["tick_ms"] else 0.0
            add(
                f"tick with {int(sizes[-1]):,} pending within 2x of {int(sizes[0]):,} [{kind}]",
                f"{big['tick_ms']} ms vs {small['tick_ms']} ms = {ratio:.2f}x",
                ratio <= 2.0,
            )
            add(
                f"worker memory with {int(sizes[-1]):,} pending [{kind}] < 200 MB",
                f"{big['worker_peak_mb']} MB peak RSS",
                big["worker_peak_mb"] < 200,
            )
    for kind in ("sqlite", "postgres"):
        pacing = _get(results, "pacing", kind)
        if pacing:
            add(
                f"pacing at {pacing['limit_per_s']:g}/s [{kind}]: never above in any 1 s",
                f"max {pacing['max_in_any_1s']} in any 1 s ({pacing['workers']} workers)"
                + _headroom(pacing),
                pacing["max_in_any_1s"] <= pacing["limit_per_s"],
            )
            add(
                f"pacing at {pacing['limit_per_s']:g}/s [{kind}]: >= 95% of the limit used",
                f"{pacing['used_share']:.1%} ({pacing['placed']} in {pacing['seconds']:g} s)",
                pacing["used_share"] >= 0.95,
            )
    return rows


def _headroom(pacing: dict[str, Any]) -> str:
    headroom = pacing.get("headroom_ms")  # absent from results files before it was measured
    if headroom is None:
        return ""
    return f"; {pacing['limit_per_s'] + 1:g} in a row spanned 1 s {headroom:+g} ms at the least"


def render(results: dict[str, Any]) -> str:
    lines = []
    m = results.get("machine", {})
    lines.append(
        f"machine: {m.get('cpus')} CPUs ({m.get('cpu')}), {m.get('memory')}, Python {m.get('python')},"
        f" SQLite {m.get('sqlite')}"
    )
    if results.get("commit"):
        dirty = " with uncommitted changes" if results.get("dirty") else ""
        lines.append(f"commit: {results['commit'][:12]}{dirty}")
    ceilings = []
    if _get(results, "noop"):
        ceilings.append(f"no-op endpoint {results['noop']['rate_per_s']:.0f}/s")
    if _get(results, "emulator_create"):
        ceilings.append(f"emulator creates {results['emulator_create']['rate_per_s']:.0f}/s")
    if _get(results, "sdk_create"):
        ceilings.append(f"SDK creates (8 threads) {results['sdk_create']['rate_per_s']:.0f}/s")
    if ceilings:
        lines.append("ceilings: " + ", ".join(ceilings))
    rows = results.get("targets", [])
    width = max((len(r["target"]) for r in rows), default=10)
    for row in rows:
        mark = {True: "MET  ", False: "UNMET", None: "-    "}[row["met"]]
        lines.append(f"{mark} {row['target']:<{width}}  {row['measured']}")
    for failure in results.get("failures", []):
        lines.append(f"FAILED {failure}")
    lines.append(f"({results.get('seconds', 0):.0f} s)")
    return "\n".join(lines)
