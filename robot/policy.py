"""The escalation policy: given a case, its attempts and the time, what to do next.

Pure: no I/O, no database, no clock reads. The caller (worker, webhooks, dashboard) builds the
snapshots, calls :func:`decide` after every change to a case or its attempts and again at
``Decision.next_review_at``, and applies the actions in order:

- ``ScheduleAttempt``: insert a SCHEDULED attempt due at ``due_at`` (to_contacts: one per contact,
  to the contact's number).
- ``CancelRobotAttempts``: mark CANCELED every SCHEDULED attempt to the person whose purpose is
  WARNING or RETRY (both channels). Follow-ups, contact notices and staff attempts are untouched.
- ``Escalate``: state = escalated; escalated_at = escalated_at or now; critical |= action.critical.
- ``NotifyContacts``: contacts_notified_at = now (the attempts come as ScheduleAttempt actions).
- ``RequestHomeVisit``: home_visit_requested_at = now, and file the home-visit request.
- ``Close``: state = closed, closed_at = now, disposition = action.disposition.
- then store ``next_review_at`` on the case.

Follow-ups are ``ScheduleAttempt(purpose=FOLLOW_UP)`` actions, one per follow-up, emitted in the
same decision as the ``Close`` (or on the first decision after staff close the case).

Durations in the settings are policy minutes; ``time_scale`` compresses them (real = policy /
time_scale), including the rolling hour of the call cap. Quiet hours and the follow-ups-per-day cap
are wall-clock rules, judged on the actual due time in the person's local zone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from robot.config import PolicySettings, RiskPolicy
from robot.models import AttemptState, CaseState, Channel, Disposition, Outcome, Purpose, Risk

#: A placed or claimed call with no final status after this many policy minutes counts as failed.
CALL_REPORT_TIMEOUT_MINUTES = 15.0
#: The same for an SMS delivery report (carriers can be slow to report).
SMS_REPORT_TIMEOUT_MINUTES = 60.0
#: A follow-up pushed out of quiet hours (or to the next day) lands this long after they end.
FOLLOW_UP_MORNING_DELAY = timedelta(minutes=5)


class Template(StrEnum):
    WARNING_SMS = "warning_sms"
    WARNING_CALL = "warning_call"  #: the first robot call and its retries
    RELATIVES_NOTICE = "relatives_notice"  #: SMS and call to each contact
    FOLLOW_UP_CALL = "follow_up_call"


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseSnapshot:
    """What the policy needs of a case. Datetimes are aware UTC."""

    id: int
    risk: Risk
    state: CaseState
    critical: bool
    opened_at: datetime
    confirmed_at: datetime | None
    escalated_at: datetime | None
    contacts_notified_at: datetime | None
    home_visit_requested_at: datetime | None
    closed_at: datetime | None
    disposition: str | None
    timezone: str  #: IANA name of the person's zone; an unknown name falls back to UTC
    contact_count: int
    sms_blocked: bool  #: a permanent provider error stopped SMS to this number
    calls_blocked: bool  #: the same for calls


@dataclass(frozen=True)
class AttemptSnapshot:
    """One attempt of the case. ``to_contact``: to a contact rather than the person."""

    id: int
    channel: Channel
    purpose: Purpose
    state: AttemptState
    outcome: Outcome | None
    due_at: datetime
    placed_at: datetime | None
    finished_at: datetime | None
    to_contact: bool
    digits: str | None


# --- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleAttempt:
    channel: Channel
    purpose: Purpose
    template: Template
    due_at: datetime
    to_contacts: bool  #: True: one attempt per contact (the caller expands it)
    reason: str


@dataclass(frozen=True)
class CancelRobotAttempts:
    reason: str


@dataclass(frozen=True)
class Escalate:
    reason: str
    critical: bool  #: to the head of the human queue


@dataclass(frozen=True)
class NotifyContacts:
    reason: str


@dataclass(frozen=True)
class RequestHomeVisit:
    reason: str


@dataclass(frozen=True)
class Close:
    disposition: Disposition
    reason: str


Action = (
    ScheduleAttempt | CancelRobotAttempts | Escalate | NotifyContacts | RequestHomeVisit | Close
)


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    #: Call decide again at this time even if nothing happens; None when nothing is pending.
    next_review_at: datetime | None


# --- public functions -----------------------------------------------------------------------


def decide(
    case: CaseSnapshot,
    attempts: Sequence[AttemptSnapshot],
    now: datetime,
    settings: PolicySettings,
    *,
    time_scale: float = 1.0,
) -> Decision:
    """What to do for ``case`` at ``now`` (aware UTC).

    Idempotent: applying the actions and calling again with the same ``now`` yields no actions.
    """
    v = _View(case, tuple(attempts), now, settings, _risk_policy(settings, case.risk), time_scale)
    if case.state == CaseState.CLOSED or case.closed_at is not None:
        actions = _cancel_live(v, "case closed")
        actions += _follow_ups(v, case.closed_at or now, case.disposition)
        return Decision(tuple(actions), None)
    if v.confirmed:
        return Decision(_on_confirmed(v), None)
    return _ladder(v)


def horizon(settings: PolicySettings, risk: Risk, *, time_scale: float = 1.0) -> timedelta:
    """Longest time from opening until the case is escalated or closed (real time).

    Assumes the worker places attempts when due. Bounded by the human-queue delay if there is
    one, else by the robot running out of attempts (each retry may wait out a report timeout and
    a full rolling hour of the call cap).
    """
    rp = _risk_policy(settings, risk)
    robot = SMS_REPORT_TIMEOUT_MINUTES if rp.send_sms else 0.0
    if rp.robot_call:
        per_retry = rp.retry_every_minutes + 60.0 + CALL_REPORT_TIMEOUT_MINUTES
        robot = max(robot, CALL_REPORT_TIMEOUT_MINUTES + rp.call_retries * per_retry)
    if rp.human_queue_minutes is not None:
        robot = min(robot, rp.human_queue_minutes)
    return timedelta(minutes=(robot + 1.0) / time_scale)  # +1: rounding of scaled durations


def is_quiet(local: datetime, settings: PolicySettings) -> bool:
    """Whether a local time falls in quiet hours (start == end means there are none)."""
    start, end = settings.quiet_hours_start, settings.quiet_hours_end
    if start <= end:
        return start <= local.hour < end
    return local.hour >= start or local.hour < end


# --- the view of one case -------------------------------------------------------------------

_LIVE = (Purpose.WARNING, Purpose.RETRY)
_ROBOT = (Purpose.WARNING, Purpose.RETRY, Purpose.FOLLOW_UP)
_PENDING = (AttemptState.SCHEDULED, AttemptState.CLAIMED, AttemptState.PLACED)
_ENDED = (AttemptState.FINISHED, AttemptState.FAILED)


@dataclass(frozen=True)
class _View:
    case: CaseSnapshot
    attempts: tuple[AttemptSnapshot, ...]
    now: datetime
    settings: PolicySettings
    rp: RiskPolicy
    scale: float

    def minutes(self, policy_minutes: float) -> timedelta:
        return timedelta(minutes=policy_minutes / self.scale)

    def after_opening(self, policy_minutes: float) -> datetime:
        return self.case.opened_at + self.minutes(policy_minutes)

    def live(self, *channels: Channel) -> list[AttemptSnapshot]:
        """The robot's live warnings (first and retries) to the person."""
        return [
            a
            for a in self.attempts
            if a.channel in channels and a.purpose in _LIVE and not a.to_contact
        ]

    def ended_at(self, a: AttemptSnapshot) -> datetime | None:
        """When the attempt ended; None while pending or if canceled. Lost reports time out."""
        if a.state in _ENDED:
            return a.finished_at or a.placed_at or a.due_at
        if a.state in (AttemptState.CLAIMED, AttemptState.PLACED):
            deadline = self.report_deadline(a)
            return deadline if deadline <= self.now else None
        return None

    def report_deadline(self, a: AttemptSnapshot) -> datetime:
        sms = a.channel == Channel.SMS
        timeout = SMS_REPORT_TIMEOUT_MINUTES if sms else CALL_REPORT_TIMEOUT_MINUTES
        return (a.placed_at or a.due_at) + self.minutes(timeout)

    def pending(self, a: AttemptSnapshot) -> bool:
        return a.state in _PENDING and self.ended_at(a) is None

    @property
    def confirmed(self) -> bool:
        return self.case.confirmed_at is not None or any(
            _confirms(a) for a in self.live(Channel.SMS, Channel.CALL)
        )

    @property
    def escalated(self) -> bool:
        return self.case.escalated_at is not None or self.case.state == CaseState.ESCALATED

    @property
    def critical(self) -> bool:
        """Flagged critical, or key 2 (put me through) or 3 (already paid) on a robot call."""
        keys = (set(a.digits or "") for a in self.live(Channel.CALL))
        return self.case.critical or any(k & {"2", "3"} for k in keys)

    def failed_calls(self) -> list[AttemptSnapshot]:
        """Live calls to the person that ended without confirmation."""
        return [
            a for a in self.live(Channel.CALL) if self.ended_at(a) is not None and not _confirms(a)
        ]


def _confirms(a: AttemptSnapshot) -> bool:
    return a.outcome == Outcome.CONFIRMED or "1" in (a.digits or "")


def _risk_policy(settings: PolicySettings, risk: Risk) -> RiskPolicy:
    rp: RiskPolicy = getattr(settings, Risk(risk).value)
    return rp


def _schedule(
    channel: Channel, purpose: Purpose, template: Template, due: datetime, reason: str
) -> ScheduleAttempt:
    return ScheduleAttempt(channel, purpose, template, due, False, reason)


# --- the rungs ------------------------------------------------------------------------------


def _ladder(v: _View) -> Decision:
    """An open, unconfirmed case: warnings, retries, humans, contacts, home visit."""
    actions: list[Action] = _first_warnings(v)
    retry = _retry(v)
    if retry is not None:
        actions.append(retry)
    working = bool(actions) or any(v.pending(a) for a in v.live(Channel.SMS, Channel.CALL))
    busy = v.rp.busy_escalates and any(a.outcome == Outcome.BUSY for a in v.failed_calls())
    warned = not v.rp.robot_call and any(
        a.outcome == Outcome.DELIVERED for a in v.live(Channel.SMS)
    )
    reviews: list[datetime] = []
    reasons = _escalation_reasons(v, busy, reviews)
    if not (v.escalated or reasons or working or warned):
        reasons.append("the robot has no way left to reach the person")
    if reasons:
        actions.append(Escalate("; ".join(reasons), critical=v.critical))
    actions += _contacts_and_visit(v, busy, reviews)
    if warned and not v.escalated and not reasons:  # an SMS-only level: the SMS was enough
        actions.append(Close(Disposition.WARNED, "warning SMS delivered"))
        actions += _follow_ups(v, v.now, Disposition.WARNED)
        return Decision(tuple(actions), None)
    reviews += [v.report_deadline(a) for a in v.live(Channel.SMS, Channel.CALL) if v.pending(a)]
    return Decision(tuple(actions), min((t for t in reviews if t > v.now), default=None))


def _on_confirmed(v: _View) -> tuple[Action, ...]:
    """Stop the robot; close unless humans hold the case (they close it themselves)."""
    reasons = _escalation_reasons(v, False, [])
    actions: list[Action] = [Escalate("; ".join(reasons), v.critical)] if reasons else []
    actions += _cancel_live(v, "confirmed")
    if not v.escalated and not reasons:
        actions.append(Close(Disposition.CONFIRMED, "the person confirmed the warning"))
        actions += _follow_ups(v, v.now, Disposition.CONFIRMED)
    return tuple(actions)


def _escalation_reasons(v: _View, busy: bool, reviews: list[datetime]) -> list[str]:
    """Why the case goes to (or back to, or up in) the human queue now; adds future rungs."""
    reasons = []
    if v.critical and not (v.escalated and v.case.critical):
        reasons.append("critical: already paid or asked for an officer")
    if v.case.disposition == Disposition.STILL_BELIEVES and v.case.state != CaseState.ESCALATED:
        reasons.append("still believes the fraudster")
    if v.escalated or v.confirmed:
        return reasons
    if v.rp.human_on_first_failure and v.failed_calls():
        reasons.append("the first call was not confirmed")
    if busy:
        reasons.append("line busy: may be on the phone with the fraudster")
    if v.rp.human_queue_minutes is not None:
        due = v.after_opening(v.rp.human_queue_minutes)
        if v.now >= due:
            reasons.append(f"not confirmed after {v.rp.human_queue_minutes:g} min")
        reviews.append(due)
    return reasons


def _contacts_and_visit(v: _View, busy: bool, reviews: list[datetime]) -> list[Action]:
    actions: list[Action] = []
    contacts, visit = v.rp.contacts_minutes, v.rp.home_visit_minutes
    if v.case.contact_count > 0 and v.case.contacts_notified_at is None:
        if busy:
            actions += _notify_contacts("line busy", v.now)
        elif contacts is not None:
            reviews.append(v.after_opening(contacts))
            if v.now >= reviews[-1]:
                actions += _notify_contacts(f"not confirmed after {contacts:g} min", v.now)
    if visit is not None and v.case.home_visit_requested_at is None:
        reviews.append(v.after_opening(visit))
        if v.now >= reviews[-1]:
            actions.append(RequestHomeVisit(f"not confirmed after {visit:g} min"))
    return actions


def _notify_contacts(reason: str, now: datetime) -> list[Action]:
    """Relatives get the notice by SMS and by call, at once (live, so no quiet hours)."""
    notice, purpose = Template.RELATIVES_NOTICE, Purpose.CONTACT_NOTICE
    return [
        NotifyContacts(reason),
        ScheduleAttempt(Channel.SMS, purpose, notice, now, True, reason),
        ScheduleAttempt(Channel.CALL, purpose, notice, now, True, reason),
    ]


def _first_warnings(v: _View) -> list[Action]:
    """SMS and robot call at once, 24x7, each unless the level skips it or the channel is blocked."""
    actions: list[Action] = []
    if v.rp.send_sms and not v.case.sms_blocked and not v.live(Channel.SMS):
        sms = _schedule(Channel.SMS, Purpose.WARNING, Template.WARNING_SMS, v.now, "new case")
        actions.append(sms)
    if v.rp.robot_call and not v.case.calls_blocked and not v.live(Channel.CALL):
        due = _rate_capped(v.now, _robot_call_times(v.attempts), v)
        actions.append(
            _schedule(Channel.CALL, Purpose.WARNING, Template.WARNING_CALL, due, "new case")
        )
    return actions


def _retry(v: _View) -> ScheduleAttempt | None:
    """The next robot call, retry_every_minutes after the last one ended unconfirmed."""
    calls = v.live(Channel.CALL)
    if not v.rp.robot_call or v.case.calls_blocked or any(v.pending(a) for a in calls):
        return None
    if v.critical:
        return None  # already paid or asked for an officer: people have it now, not the robot
    if sum(a.purpose == Purpose.RETRY for a in calls) >= v.rp.call_retries:
        return None
    ended = [t for a in calls if (t := v.ended_at(a)) is not None]
    if not ended:
        return None
    due = max(max(ended) + v.minutes(v.rp.retry_every_minutes), v.now)
    due = _rate_capped(due, _robot_call_times(v.attempts), v)
    return _schedule(Channel.CALL, Purpose.RETRY, Template.WARNING_CALL, due, "not confirmed")


def _cancel_live(v: _View, reason: str) -> list[Action]:
    if any(a.state == AttemptState.SCHEDULED for a in v.live(Channel.SMS, Channel.CALL)):
        return [CancelRobotAttempts(reason)]
    return []


# --- call cap, quiet hours, follow-ups ------------------------------------------------------


def _rate_capped(t: datetime, times: Sequence[datetime], v: _View) -> datetime:
    """The earliest time from ``t`` at which one more call keeps every rolling hour at the cap."""
    window, cap = v.minutes(60.0), v.settings.max_calls_per_hour
    candidates = sorted({t, *(c + window for c in times if c + window > t)})
    for candidate in candidates:
        starts = [s for s in (*times, candidate) if s <= candidate < s + window]
        if all(sum(s <= x < s + window for x in times) < cap for s in starts):
            return candidate
    raise AssertionError("unreachable: the last candidate is clear of every call")


def _follow_ups(v: _View, closed_at: datetime, disposition: str | None) -> list[Action]:
    """One robot call per follow_up_days entry, out of quiet hours, capped per local day."""
    days = sorted(set(v.rp.follow_up_days))
    skip = disposition in (Disposition.WRONG_NUMBER, Disposition.FALSE_ALARM)
    if skip or not days or v.case.calls_blocked or v.settings.max_follow_ups_per_day < 1:
        return []
    if any(a.purpose == Purpose.FOLLOW_UP and not a.to_contact for a in v.attempts):
        return []  # scheduled once
    zone = _zone(v.case.timezone)
    # Scheduled live attempts are being canceled; what has reached the number still counts.
    kept = [a for a in v.attempts if not (a.purpose in _LIVE and a.state == AttemptState.SCHEDULED)]
    times = _robot_call_times(kept)
    per_day: Counter[date] = Counter()
    actions: list[Action] = []
    due = v.now
    for day in days:
        due = max(due, closed_at + v.minutes(day * 1440.0))
        due = _follow_up_slot(due, times, per_day, zone, v)
        times = sorted([*times, due])
        per_day[due.astimezone(zone).date()] += 1
        actions.append(
            ScheduleAttempt(
                Channel.CALL,
                Purpose.FOLLOW_UP,
                Template.FOLLOW_UP_CALL,
                due,
                False,
                f"follow-up, day {day} after closing",
            )
        )
    return actions


def _follow_up_slot(
    t: datetime, times: Sequence[datetime], per_day: Counter[date], zone: ZoneInfo, v: _View
) -> datetime:
    """Move ``t`` forward until it is outside quiet hours, on a day with room, under the cap."""
    end = v.settings.quiet_hours_end
    while True:
        local = t.astimezone(zone)
        if is_quiet(local, v.settings):
            day = local.date() if local.hour < end else local.date() + timedelta(days=1)
            t = max(t + timedelta(minutes=1), _local_time(day, end, zone) + FOLLOW_UP_MORNING_DELAY)
            continue
        if per_day[local.date()] >= v.settings.max_follow_ups_per_day:
            day = local.date() + timedelta(days=1)
            t = max(t + timedelta(minutes=1), _local_time(day, end, zone) + FOLLOW_UP_MORNING_DELAY)
            continue
        capped = _rate_capped(t, times, v)
        if capped == t:
            return t
        t = capped


def _robot_call_times(attempts: Iterable[AttemptSnapshot]) -> list[datetime]:
    """When robot calls reached, or will reach, the person's number: what the hourly cap counts."""
    counted = (*_PENDING, AttemptState.FINISHED)  # not canceled, not failed before placing
    return sorted(
        a.placed_at or a.due_at
        for a in attempts
        if a.channel == Channel.CALL
        and a.purpose in _ROBOT
        and not a.to_contact
        and a.state in counted
    )


def _local_time(day: date, hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
