"""The escalation policy: the default ladders by example, and invariants by simulation.

The simulator plays the caller: it calls ``decide``, applies the actions to the snapshots the way
the worker does, advances the clock to the next due attempt, finish or review, and lets each
placed attempt end with an outcome drawn by hypothesis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from robot.config import PolicySettings, RiskPolicy
from robot.models import AttemptState, CaseState, Channel, Disposition, Outcome, Purpose, Risk
from robot.policy import (
    Action,
    AttemptSnapshot,
    CancelRobotAttempts,
    CaseSnapshot,
    Close,
    Escalate,
    NotifyContacts,
    RequestHomeVisit,
    ScheduleAttempt,
    Template,
    decide,
    horizon,
    is_quiet,
)

T0 = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
LIVE = (Purpose.WARNING, Purpose.RETRY)


def new_case(risk: Risk, **changes: object) -> CaseSnapshot:
    case = CaseSnapshot(
        id=1,
        risk=risk,
        state=CaseState.OPEN,
        critical=False,
        opened_at=T0,
        confirmed_at=None,
        escalated_at=None,
        contacts_notified_at=None,
        home_visit_requested_at=None,
        closed_at=None,
        disposition=None,
        timezone="Asia/Shanghai",
        contact_count=2,
        sms_blocked=False,
        calls_blocked=False,
    )
    return replace(case, **changes)  # type: ignore[arg-type]


def attempt(
    id: int,
    channel: Channel,
    purpose: Purpose,
    due_at: datetime,
    state: AttemptState = AttemptState.SCHEDULED,
    outcome: Outcome | None = None,
    digits: str | None = None,
) -> AttemptSnapshot:
    placed = due_at if state not in (AttemptState.SCHEDULED, AttemptState.CANCELED) else None
    finished = due_at if state is AttemptState.FINISHED else None
    return AttemptSnapshot(
        id, channel, purpose, state, outcome, due_at, placed, finished, False, digits
    )


# --- the simulator --------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """How a placed attempt ends: finish (with outcome), lost (no callback), blocked, reply."""

    kind: str
    outcome: Outcome | None = None
    digits: str | None = None


CALL_RESULTS = [
    Result("finish", Outcome.NO_ANSWER),
    Result("finish", Outcome.BUSY),
    Result("finish", Outcome.VOICEMAIL),
    Result("finish", Outcome.FAILED),
    Result("finish", Outcome.HUNG_UP),
    Result("finish", Outcome.ANSWERED),
    Result("finish", Outcome.ANSWERED, "9"),
    Result("finish", Outcome.CONFIRMED, "1"),
    Result("finish", Outcome.ANSWERED, "2"),
    Result("finish", Outcome.ANSWERED, "93"),
    Result("finish", Outcome.CONFIRMED, "13"),
    Result("lost"),
    Result("blocked"),
]
SMS_RESULTS = [
    Result("finish", Outcome.DELIVERED),
    Result("finish", Outcome.UNDELIVERED),
    Result("finish", Outcome.FAILED),
    Result("reply", Outcome.DELIVERED),  # delivered, and the person replied to confirm
    Result("lost"),
    Result("blocked"),
]
Script = Callable[[AttemptSnapshot], tuple[Result, float]]  # -> result, duration in policy minutes


def apply(
    case: CaseSnapshot, attempts: list[AttemptSnapshot], actions: tuple[Action, ...], now: datetime
) -> CaseSnapshot:
    """Apply actions in order, as the caller must (attempts are changed in place)."""
    for action in actions:
        if isinstance(action, ScheduleAttempt):
            targets = [True] * case.contact_count if action.to_contacts else [False]
            for to_contact in targets:
                attempts.append(
                    attempt(len(attempts) + 1, action.channel, action.purpose, action.due_at)
                )
                attempts[-1] = replace(attempts[-1], to_contact=to_contact)
        elif isinstance(action, CancelRobotAttempts):
            for i, a in enumerate(attempts):
                if a.state is AttemptState.SCHEDULED and a.purpose in LIVE and not a.to_contact:
                    attempts[i] = replace(a, state=AttemptState.CANCELED)
        elif isinstance(action, Escalate):
            case = replace(
                case,
                state=CaseState.ESCALATED,
                escalated_at=case.escalated_at or now,
                critical=case.critical or action.critical,
            )
        elif isinstance(action, NotifyContacts):
            case = replace(case, contacts_notified_at=now)
        elif isinstance(action, RequestHomeVisit):
            case = replace(case, home_visit_requested_at=now)
        else:
            case = replace(
                case, state=CaseState.CLOSED, closed_at=now, disposition=action.disposition
            )
    return case


@dataclass
class World:
    case: CaseSnapshot
    script: Script
    policy: PolicySettings = field(default_factory=PolicySettings)
    scale: float = 1.0
    #: Staff: (policy minutes after escalation, disposition); "release" = still believes, reopen.
    staff: tuple[float, str] | None = None
    attempts: list[AttemptSnapshot] = field(default_factory=list)
    history: list[tuple[datetime, Action]] = field(default_factory=list)
    ends: dict[int, tuple[datetime, Result]] = field(default_factory=dict)
    review_at: datetime | None = None
    staff_done: bool = False

    def minutes(self, m: float) -> timedelta:
        return timedelta(minutes=m / self.scale)

    def decide(self, now: datetime) -> tuple[Action, ...]:
        decision = decide(self.case, self.attempts, now, self.policy, time_scale=self.scale)
        assert decision.next_review_at is None or decision.next_review_at > now
        assert decide(self.case, self.attempts, now, self.policy, time_scale=self.scale) == decision
        if self.case.confirmed_at is not None:  # invariant 1, as decided
            assert not [
                a for a in decision.actions if isinstance(a, ScheduleAttempt) and a.purpose in LIVE
            ], "robot warning scheduled after confirmation"
        self.case = apply(self.case, self.attempts, decision.actions, now)
        self.history += [(now, a) for a in decision.actions]
        again = decide(self.case, self.attempts, now, self.policy, time_scale=self.scale)
        assert again.actions == (), f"not idempotent: {again.actions}"  # invariant 5
        self.review_at = again.next_review_at
        return decision.actions

    def next_event(self) -> datetime | None:
        times = [a.due_at for a in self.attempts if a.state is AttemptState.SCHEDULED]
        times += [end for end, result in self.ends.values() if result.kind != "lost"]
        if self.review_at is not None:
            times.append(self.review_at)
        staff = self.staff_time()
        if staff is not None:
            times.append(staff)
        return min(times, default=None)

    def staff_time(self) -> datetime | None:
        if self.staff is None or self.staff_done or self.case.escalated_at is None:
            return None
        return self.case.escalated_at + self.minutes(self.staff[0])

    def run(self) -> None:
        self.decide(self.case.opened_at)
        for _ in range(2000):
            now = self.next_event()
            if now is None:
                return
            self.step(now)
        raise AssertionError("the simulation did not settle")

    def step(self, now: datetime) -> None:
        finished = self.finish(now)
        staff = self.staff_time()
        if staff is not None and staff <= now:
            self.staff_act(now)
        before = self.case
        self.decide(now)
        for a in finished:
            self.check_reactions(a, before)
        due = [a for a in self.attempts if a.state is AttemptState.SCHEDULED and a.due_at <= now]
        for a in due:
            self.place(a, now)
        if due:
            self.decide(now)

    def place(self, a: AttemptSnapshot, now: datetime) -> None:
        robot_live = a.purpose in LIVE and not a.to_contact
        if robot_live and a.channel is Channel.CALL:  # invariant 1, as placed
            assert self.case.confirmed_at is None, "robot call after confirmation"
            assert self.case.closed_at is None, "live robot call after closing"
        if a.to_contact or a.purpose is Purpose.FOLLOW_UP:
            result, minutes = Result("finish", Outcome.ANSWERED), 1.0
        else:
            result, minutes = self.script(a)
        if result.kind == "blocked":
            if a.channel is Channel.CALL:
                self.case = replace(self.case, calls_blocked=True)
            else:
                self.case = replace(self.case, sms_blocked=True)
            self.set(a, state=AttemptState.FAILED, finished_at=now)
            return
        self.set(a, state=AttemptState.PLACED, placed_at=now)
        self.ends[a.id] = (now + self.minutes(minutes), result)

    def finish(self, now: datetime) -> list[AttemptSnapshot]:
        done = []
        for attempt_id, (end, result) in sorted(self.ends.items(), key=lambda kv: kv[1][0]):
            if end > now or result.kind == "lost":
                continue
            del self.ends[attempt_id]
            a = self.set(
                self.attempts[attempt_id - 1],
                state=AttemptState.FINISHED,
                outcome=result.outcome,
                digits=result.digits,
                finished_at=end,
            )
            confirms = "1" in (result.digits or "") or result.kind == "reply"
            if confirms and not a.to_contact and self.case.confirmed_at is None:
                self.case = replace(self.case, confirmed_at=end)
            done.append(a)
        return done

    def staff_act(self, now: datetime) -> None:
        self.staff_done = True
        assert self.staff is not None
        if self.case.closed_at is not None:
            return
        if self.staff[1] == "release":
            disposition = Disposition.STILL_BELIEVES
            self.case = replace(self.case, state=CaseState.OPEN, disposition=disposition)
        else:
            disposition = Disposition(self.staff[1])
            self.case = replace(
                self.case, state=CaseState.CLOSED, closed_at=now, disposition=disposition
            )

    def check_reactions(self, a: AttemptSnapshot, before: CaseSnapshot) -> None:
        """Invariant 6: critical keys escalate at once; busy on high risk goes wide at once."""
        if a.to_contact or a.purpose not in LIVE or a.channel is not Channel.CALL:
            return
        if before.closed_at is not None:
            return
        if set(a.digits or "") & {"2", "3"}:
            assert self.case.escalated_at is not None and self.case.critical
        rp = risk_policy(self.policy, self.case.risk)
        unconfirmed = before.confirmed_at is None
        if a.outcome is Outcome.BUSY and rp.busy_escalates and unconfirmed:
            assert self.case.escalated_at is not None
            assert self.case.contact_count == 0 or self.case.contacts_notified_at is not None
        if rp.human_on_first_failure and unconfirmed and "1" not in (a.digits or ""):
            assert self.case.escalated_at is not None

    def set(self, a: AttemptSnapshot, **changes: object) -> AttemptSnapshot:
        new = replace(a, **changes)  # type: ignore[arg-type]
        self.attempts[a.id - 1] = new
        return new

    def timeline(self) -> list[tuple[float, str]]:
        """(policy minutes after opening, action) for compact assertions."""
        return [
            ((at - self.case.opened_at) / self.minutes(1), describe(action))
            for at, action in self.history
        ]


def describe(action: Action) -> str:
    if isinstance(action, ScheduleAttempt):
        due = action.due_at
        return f"{action.channel}:{action.template}{'*' if action.to_contacts else ''}@{due:%H:%M}"
    if isinstance(action, Escalate):
        return "escalate!" if action.critical else "escalate"
    if isinstance(action, Close):
        return f"close:{action.disposition}"
    return {CancelRobotAttempts: "cancel", NotifyContacts: "contacts"}.get(type(action), "visit")


def risk_policy(policy: PolicySettings, risk: Risk) -> RiskPolicy:
    level: RiskPolicy = getattr(policy, risk.value)
    return level


def always(*results: Result, minutes: float = 0.0) -> Script:
    """Each attempt ends with the next result for its channel; the last one repeats."""
    queues: dict[Channel, list[Result]] = {Channel.CALL: [], Channel.SMS: []}
    for r in results:
        sms = r.outcome in (Outcome.DELIVERED, Outcome.UNDELIVERED) or r.kind == "reply"
        queues[Channel.SMS if sms else Channel.CALL].append(r)
    queues[Channel.SMS] = queues[Channel.SMS] or [Result("finish", Outcome.DELIVERED)]
    queues[Channel.CALL] = queues[Channel.CALL] or [Result("finish", Outcome.NO_ANSWER)]

    def script(a: AttemptSnapshot) -> tuple[Result, float]:
        queue = queues[a.channel]
        return (queue.pop(0) if len(queue) > 1 else queue[0]), minutes

    return script


NO_ANSWER = Result("finish", Outcome.NO_ANSWER)


# --- the default ladders --------------------------------------------------------------------


def test_it_warns_a_high_risk_case_by_sms_and_call_at_once() -> None:
    decision = decide(new_case(Risk.HIGH), [], T0, PolicySettings())
    assert [(a.channel, a.template, a.due_at) for a in decision.actions] == [  # type: ignore[union-attr]
        (Channel.SMS, Template.WARNING_SMS, T0),
        (Channel.CALL, Template.WARNING_CALL, T0),
    ]
    assert decision.next_review_at == T0 + timedelta(minutes=5)  # the human queue rung


def test_it_runs_the_high_risk_ladder() -> None:
    world = World(new_case(Risk.HIGH), always(NO_ANSWER))
    world.run()
    live = [t for t, what in world.timeline() if what.startswith("call:warning_call")]
    assert live == [0, 0, 5, 10]  # the first call, then 3 retries 5 min after each ending
    assert (0, "escalate") in world.timeline()  # at the first failed call
    assert (15, "contacts") in world.timeline()
    assert (15, "sms:relatives_notice*@02:15") in world.timeline()
    assert (15, "call:relatives_notice*@02:15") in world.timeline()
    assert (30, "visit") in world.timeline()
    assert world.case.state is CaseState.ESCALATED and world.review_at is None
    assert sum(a.to_contact for a in world.attempts) == 4  # 2 contacts x SMS + call


def test_it_escalates_high_risk_at_five_minutes_while_the_first_call_rings() -> None:
    world = World(new_case(Risk.HIGH), always(Result("finish", Outcome.NO_ANSWER), minutes=7))
    world.run()
    assert world.timeline()[2] == (5, "escalate")


def test_it_runs_the_medium_risk_ladder() -> None:
    world = World(new_case(Risk.MEDIUM), always(NO_ANSWER, minutes=1))
    world.run()
    timeline = world.timeline()
    assert [t for t, what in timeline if what.startswith("call:")] == [0, 1, 17]
    assert [t for t, what in timeline if what == "escalate"] == [30]
    assert "contacts" not in [what for _, what in timeline]
    assert "visit" not in [what for _, what in timeline]
    calls = [a.placed_at for a in world.attempts if a.channel is Channel.CALL]
    assert calls == [T0, T0 + timedelta(minutes=16), T0 + timedelta(minutes=32)]


def test_it_closes_low_risk_as_warned_when_the_sms_is_delivered() -> None:
    world = World(new_case(Risk.LOW), always(Result("finish", Outcome.DELIVERED), minutes=1))
    world.run()
    assert world.timeline() == [(0, "sms:warning_sms@02:00"), (1, "close:warned")]


def test_it_escalates_low_risk_when_the_sms_is_not_delivered() -> None:
    world = World(new_case(Risk.LOW), always(Result("finish", Outcome.UNDELIVERED), minutes=1))
    world.run()
    assert world.timeline() == [(0, "sms:warning_sms@02:00"), (1, "escalate")]


def test_it_escalates_low_risk_at_once_when_sms_is_blocked() -> None:
    decision = decide(new_case(Risk.LOW, sms_blocked=True), [], T0, PolicySettings())
    assert [describe(a) for a in decision.actions] == ["escalate"]


def test_it_stops_and_closes_on_confirmation_then_follows_up_out_of_quiet_hours() -> None:
    opened = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai
    case = new_case(Risk.HIGH, opened_at=opened)
    world = World(case, always(Result("finish", Outcome.CONFIRMED, "1"), minutes=0.5))
    world.run()
    assert world.timeline()[2:] == [
        (0.5, "close:confirmed"),
        *[(0.5, "call:follow_up_call@00:05")] * 5,  # 08:05 in Shanghai
    ]
    follow_ups = [a.due_at for a in world.attempts if a.purpose is Purpose.FOLLOW_UP]
    local = [t.astimezone(ZoneInfo("Asia/Shanghai")) for t in follow_ups]
    # 22:30 local + 1, 3, 7, 14, 28 days, each moved to 08:05 the next morning
    assert [(t.month, t.day) for t in local] == [(3, 5), (3, 7), (3, 11), (3, 18), (4, 1)]
    assert all(a.state is AttemptState.FINISHED for a in world.attempts)


def test_it_leaves_a_confirmed_case_to_staff_once_escalated() -> None:
    confirmed = Result("finish", Outcome.CONFIRMED, "1")
    world = World(new_case(Risk.HIGH), always(NO_ANSWER, confirmed, minutes=0.5))
    world.run()
    assert world.timeline()[2:] == [
        (0.5, "call:warning_call@02:05"),  # retry 5 min after the first call ended
        (0.5, "escalate"),  # at the first failed call
    ]  # the retry confirmed at 6.0: no more calls, no contacts or visit, no closing by the robot
    assert world.case.state is CaseState.ESCALATED and world.review_at is None


def test_it_cancels_pending_retries_on_an_sms_reply() -> None:
    case = new_case(Risk.HIGH)
    call = attempt(2, Channel.CALL, Purpose.RETRY, T0 + timedelta(minutes=5))
    decision = decide(replace(case, confirmed_at=T0), [call], T0, PolicySettings())
    assert [describe(a) for a in decision.actions][:2] == ["cancel", "close:confirmed"]


def test_it_keeps_an_escalated_confirmed_case_for_staff() -> None:
    case = new_case(Risk.HIGH, state=CaseState.ESCALATED, escalated_at=T0, confirmed_at=T0)
    assert decide(case, [], T0, PolicySettings()).actions == ()


def test_it_escalates_critical_keys_at_once() -> None:
    world = World(new_case(Risk.MEDIUM), always(Result("finish", Outcome.ANSWERED, "3")))
    world.run()
    assert (0, "escalate!") in world.timeline()


def test_it_moves_an_escalated_case_to_the_head_of_the_queue_on_key_2() -> None:
    case = new_case(Risk.HIGH, state=CaseState.ESCALATED, escalated_at=T0)
    call = attempt(
        1, Channel.CALL, Purpose.WARNING, T0, AttemptState.FINISHED, Outcome.ANSWERED, "2"
    )
    decision = decide(case, [call], T0, PolicySettings())
    assert Escalate("critical: already paid or asked for an officer", critical=True) in (
        decision.actions
    )


def test_it_notifies_contacts_and_humans_at_once_on_a_busy_high_risk_line() -> None:
    world = World(new_case(Risk.HIGH), always(Result("finish", Outcome.BUSY), minutes=0.5))
    world.run()
    assert world.timeline()[2:7] == [
        (0.5, "call:warning_call@02:05"),  # humans and robot work in parallel
        (0.5, "escalate"),
        (0.5, "contacts"),
        (0.5, "sms:relatives_notice*@02:00"),
        (0.5, "call:relatives_notice*@02:00"),
    ]


def test_it_escalates_when_calls_are_blocked_and_the_sms_is_out() -> None:
    world = World(new_case(Risk.MEDIUM, calls_blocked=True), always(minutes=2))
    world.run()
    assert world.timeline() == [(0, "sms:warning_sms@02:00"), (2, "escalate")]


def test_it_retries_after_a_lost_callback() -> None:
    world = World(new_case(Risk.MEDIUM), always(Result("lost"), NO_ANSWER))
    world.run()
    calls = [t for t, what in world.timeline() if what.startswith("call:")]
    assert calls == [0, 15, 30]  # the lost call counts as failed after the report timeout


def test_it_keeps_a_still_believing_case_with_humans() -> None:
    case = new_case(Risk.MEDIUM, escalated_at=T0, disposition=Disposition.STILL_BELIEVES)
    decision = decide(case, [], T0 + timedelta(hours=1), PolicySettings())
    assert any(isinstance(a, Escalate) for a in decision.actions)


def test_it_skips_follow_ups_for_a_wrong_number() -> None:
    case = new_case(
        Risk.HIGH, state=CaseState.CLOSED, closed_at=T0, disposition=Disposition.WRONG_NUMBER
    )
    assert decide(case, [], T0, PolicySettings()) == decide(case, [], T0, PolicySettings())
    assert decide(case, [], T0, PolicySettings()).actions == ()


def test_it_compresses_policy_time() -> None:
    world = World(new_case(Risk.HIGH), always(NO_ANSWER), scale=60)
    world.run()
    calls = [a.placed_at for a in world.attempts if a.channel is Channel.CALL and a.to_contact]
    assert calls == [T0 + timedelta(seconds=15)] * 2  # contacts at 15 policy minutes
    retries = [a.due_at for a in world.attempts if a.purpose is Purpose.RETRY]
    assert retries == [T0 + timedelta(seconds=s) for s in (5, 10, 15)]


def test_it_caps_robot_calls_per_rolling_hour() -> None:
    fast = replace(PolicySettings().high, call_retries=8, retry_every_minutes=1.0)
    policy = replace(PolicySettings(), high=fast, max_calls_per_hour=3)
    world = World(new_case(Risk.HIGH, contact_count=0), always(NO_ANSWER), policy)
    world.run()
    calls = [a for a in world.attempts if a.channel is Channel.CALL]
    placed = [(a.placed_at - T0) / timedelta(minutes=1) for a in calls if a.placed_at]
    assert placed == [0, 1, 2, 60, 61, 62, 120, 121, 122]


def test_horizon_covers_the_default_ladders() -> None:
    assert horizon(PolicySettings(), Risk.HIGH) == timedelta(minutes=6)
    assert horizon(PolicySettings(), Risk.MEDIUM, time_scale=60) == timedelta(seconds=31)
    assert horizon(PolicySettings(), Risk.LOW) == timedelta(minutes=61)


# --- properties -----------------------------------------------------------------------------

ZONES = [
    "UTC",
    "Asia/Shanghai",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "America/St_Johns",
    "Not/A_Zone",
]
STAFF_ACTIONS = [
    "release",
    *(
        d.value
        for d in Disposition
        if d not in (Disposition.CONFIRMED, Disposition.WARNED)  # the robot's own closings
    ),
]


@st.composite
def policies(draw: st.DrawFn) -> PolicySettings:
    base = PolicySettings()
    if draw(st.booleans()):
        return base
    levels = {}
    for name in ("high", "medium", "low"):
        level: RiskPolicy = getattr(base, name)
        levels[name] = replace(
            level,
            call_retries=draw(st.integers(0, 8)) if level.robot_call else 0,
            retry_every_minutes=draw(st.sampled_from([0.5, 5.0, 15.0])),
            human_on_first_failure=draw(st.booleans()),
            human_queue_minutes=draw(st.sampled_from([None, 5.0, 30.0])),
            follow_up_days=draw(st.sampled_from([(), (1,), (1, 1, 2), (1, 3, 7, 14, 28)])),
        )
    return replace(
        base,
        **levels,
        quiet_hours_start=draw(st.integers(0, 23)),
        quiet_hours_end=draw(st.integers(0, 23)),
        max_calls_per_hour=draw(st.integers(1, 6)),
        max_follow_ups_per_day=draw(st.integers(1, 3)),
    )


@st.composite
def worlds(draw: st.DrawFn) -> World:
    opened = draw(
        st.datetimes(datetime(2024, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC))
    )
    case = new_case(
        draw(st.sampled_from(Risk)),
        opened_at=opened,
        timezone=draw(st.sampled_from(ZONES)),
        contact_count=draw(st.integers(0, 3)),
        critical=draw(st.sampled_from([False, False, False, True])),
        sms_blocked=draw(st.sampled_from([False, False, False, True])),
        calls_blocked=draw(st.sampled_from([False, False, False, True])),
    )
    scale = draw(st.sampled_from([1.0, 60.0, 0.5]) | st.floats(1.0, 5000.0))
    results = {
        Channel.CALL: st.sampled_from(CALL_RESULTS),
        Channel.SMS: st.sampled_from(SMS_RESULTS),
    }
    data = draw(st.data())

    def script(a: AttemptSnapshot) -> tuple[Result, float]:
        result = data.draw(results[a.channel], label=f"attempt {a.id}")
        minutes = st.sampled_from([0.0, 0.5, 1.0, 3.0, 6.0, 20.0]) | st.floats(0.0, 20.0)
        return result, data.draw(minutes, label="minutes")

    staff = draw(st.none() | st.tuples(st.floats(0.0, 120.0), st.sampled_from(STAFF_ACTIONS)))
    return World(case, script, draw(policies()), scale, staff)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_invariants_hold_over_any_timeline(world: World) -> None:
    world.run()  # invariants 1, 5 and 6 are checked as it runs
    case, policy, scale = world.case, world.policy, world.scale
    calls = [a for a in world.attempts if a.channel is Channel.CALL and not a.to_contact]
    # 2: no rolling hour holds more robot calls than the cap
    placed = sorted(a.placed_at for a in calls if a.placed_at is not None)
    hour = timedelta(hours=1) / scale
    for start in placed:
        assert sum(start <= t < start + hour for t in placed) <= policy.max_calls_per_hour

    # 3: humans or a closing within the horizon
    reached = [t for t in (case.escalated_at, case.closed_at) if t is not None]
    assert reached, "the case was left with the robot"
    assert min(reached) <= case.opened_at + horizon(policy, case.risk, time_scale=scale)

    # 4: follow-ups out of quiet hours, capped per local day, never early
    follow_ups = [a for a in calls if a.purpose is Purpose.FOLLOW_UP]
    zone = ZoneInfo(case.timezone if case.timezone != "Not/A_Zone" else "UTC")
    local = [a.due_at.astimezone(zone) for a in follow_ups]
    assert not any(is_quiet(t, policy) for t in local)
    assert max(Counter(t.date() for t in local).values(), default=0) <= (
        policy.max_follow_ups_per_day
    )
    days = sorted(set(risk_policy(policy, case.risk).follow_up_days))
    if follow_ups:
        assert case.closed_at is not None
        for a, day in zip(follow_ups, days, strict=True):
            assert a.due_at >= case.closed_at + timedelta(days=day) / scale
    skipped = case.disposition in (Disposition.WRONG_NUMBER, Disposition.FALSE_ALARM)
    if skipped:
        assert not follow_ups
    elif case.closed_at is not None and not case.calls_blocked:
        assert len(follow_ups) == len(days)
    if case.disposition == Disposition.STILL_BELIEVES and case.closed_at is None:
        assert case.state is CaseState.ESCALATED
    event(f"{case.risk}: {case.state}, {len(placed)} robot calls, {len(follow_ups)} follow-ups")


FAILURES = [r for r in CALL_RESULTS if r.kind == "finish" and not set(r.digits or "") & {"1"}]


@settings(max_examples=300, deadline=None)
@given(
    risk=st.sampled_from(Risk),
    policy=policies(),
    failures=st.lists(st.sampled_from(FAILURES), min_size=1, max_size=10),
    call_minutes=st.sampled_from([0.0, 0.5, 2.0]),
    reply_minutes=st.floats(0.0, 120.0),
    staff=st.none() | st.tuples(st.floats(0.0, 60.0), st.sampled_from(STAFF_ACTIONS)),
    scale=st.sampled_from([1.0, 60.0]),
)
def test_a_reply_or_a_closing_at_any_moment_stops_the_robot(
    risk: Risk,
    policy: PolicySettings,
    failures: list[Result],
    call_minutes: float,
    reply_minutes: float,
    staff: tuple[float, str] | None,
    scale: float,
) -> None:
    """Invariant 1 where it is hardest: the person confirms by SMS while a retry is scheduled."""

    def script(a: AttemptSnapshot) -> tuple[Result, float]:
        if a.channel is Channel.SMS:
            return Result("reply", Outcome.DELIVERED), reply_minutes
        return failures[min(len(failures) - 1, a.id)], call_minutes

    world = World(new_case(risk), script, policy, scale, staff)
    world.run()  # asserts no live robot call is placed after confirmation or closing
    end = world.case.confirmed_at or world.case.closed_at
    if end is not None:
        late = [a for a in world.attempts if a.purpose in LIVE and a.due_at > end]
        assert all(a.state is AttemptState.CANCELED for a in late)


def test_it_stops_robot_retries_once_the_person_pressed_2_or_3() -> None:
    # People have the case now: more robot calls would only get in their way.
    for digits in ("2", "3"):
        call = attempt(
            1, Channel.CALL, Purpose.WARNING, T0, AttemptState.FINISHED, Outcome.ANSWERED, digits
        )
        later = T0 + timedelta(minutes=30)
        decision = decide(new_case(Risk.HIGH), [call], later, PolicySettings())
        assert not [
            a
            for a in decision.actions
            if isinstance(a, ScheduleAttempt) and a.purpose is Purpose.RETRY
        ]
        unanswered = replace(call, outcome=Outcome.NO_ANSWER, digits=None)
        retried = decide(new_case(Risk.HIGH), [unanswered], later, PolicySettings())
        assert [
            a
            for a in retried.actions
            if isinstance(a, ScheduleAttempt) and a.purpose is Purpose.RETRY
        ]
