"""The supervisor's page: open cases by state and age, today's figures, workload, drills.

Drill cases are left out of every figure. "Today" is the calendar day in the dashboard's zone.

- reach rate: today's cases with a confirmed or dissuaded disposition, or confirmed by the person
  (key 1, an SMS reply) with no disposition recorded yet, over all of today's cases. A "still
  believes the fraudster" case is never counted as reached.
- warning to first contact: from the case opening to the first call to the person that a human
  answered (not a machine) or the first SMS to the person that was delivered.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from robot.app import services
from robot.dashboard import accounts
from robot.dashboard.drill import MAX_DRILL, DrillRefused, post_drill
from robot.dashboard.web import bp, duration, fail, require_supervisor, t, zone
from robot.models import (
    Attempt,
    Callback,
    Case,
    CaseState,
    Channel,
    Disposition,
    Event,
    IncomingWarning,
    Outcome,
    Purpose,
    Staff,
    utcnow,
)

#: Upper bounds of the age buckets, in minutes (the last bucket has none).
AGE_BUCKETS: tuple[tuple[str, float | None], ...] = (
    ("age.lt5", 5),
    ("age.lt30", 30),
    ("age.lt120", 120),
    ("age.lt1440", 1440),
    ("age.more", None),
)
REACHED_DISPOSITIONS = (Disposition.CONFIRMED.value, Disposition.DISSUADED.value)
_CONTACT_OUTCOMES = (Outcome.CONFIRMED.value, Outcome.ANSWERED.value, Outcome.HUNG_UP.value)


@dataclass
class Workload:
    staff_id: int
    username: str
    display_name: str
    role: str
    area: str | None
    claimed: int = 0
    actions_today: int = 0
    closed_today: int = 0
    callbacks_open: int = 0
    locked_until: datetime | None = None


@dataclass
class Report:
    day_start: datetime
    #: state -> bucket key -> count
    open_by_age: dict[str, dict[str, int]]
    warnings_today: int
    cases_today: int
    reached_today: int
    first_contact_seconds: list[float] = field(default_factory=list)
    workload: list[Workload] = field(default_factory=list)

    @property
    def reach_rate(self) -> float | None:
        return self.reached_today / self.cases_today if self.cases_today else None

    @property
    def first_contact_median(self) -> float | None:
        values = self.first_contact_seconds
        return statistics.median(values) if values else None

    @property
    def first_contact_p90(self) -> float | None:
        values = sorted(self.first_contact_seconds)
        if not values:
            return None
        return values[min(len(values) - 1, round(0.9 * (len(values) - 1)))]


def start_of_day(now: datetime, tz: ZoneInfo) -> datetime:
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0), tzinfo=tz)


def bucket(age: timedelta) -> str:
    minutes = age.total_seconds() / 60
    for key, bound in AGE_BUCKETS:
        if bound is None or minutes < bound:
            return key
    raise AssertionError("unreachable: the last bucket has no bound")


def build_report(session: Session, now: datetime, tz: ZoneInfo) -> Report:
    day_start = start_of_day(now, tz)
    real = Case.drill.is_(False)

    open_by_age: dict[str, dict[str, int]] = {
        state: dict.fromkeys((key for key, _ in AGE_BUCKETS), 0)
        for state in (CaseState.ESCALATED.value, CaseState.OPEN.value)
    }
    for state, opened_at in session.execute(
        select(Case.state, Case.opened_at).where(real, Case.state != CaseState.CLOSED.value)
    ):
        open_by_age.setdefault(state, dict.fromkeys((k for k, _ in AGE_BUCKETS), 0))
        open_by_age[state][bucket(now - opened_at)] += 1

    warnings_today = session.scalar(
        select(func.count())
        .select_from(IncomingWarning)
        .join(Case, Case.id == IncomingWarning.case_id)
        .where(real, IncomingWarning.received_at >= day_start)
    )
    today = session.execute(
        select(Case.id, Case.opened_at, Case.disposition, Case.confirmed_at).where(
            real, Case.opened_at >= day_start
        )
    ).all()
    reached = sum(
        1
        for _, _, disposition, confirmed_at in today
        if disposition in REACHED_DISPOSITIONS or (confirmed_at is not None and disposition is None)
    )
    return Report(
        day_start=day_start,
        open_by_age=open_by_age,
        warnings_today=int(warnings_today or 0),
        cases_today=len(today),
        reached_today=reached,
        first_contact_seconds=_first_contacts(session, {row.id: row.opened_at for row in today}),
        workload=_workload(session, now, day_start),
    )


def _first_contacts(session: Session, opened: dict[int, datetime]) -> list[float]:
    if not opened:
        return []
    rows = session.execute(
        select(
            Attempt.case_id,
            Attempt.channel,
            Attempt.outcome,
            Attempt.answered_by,
            Attempt.answered_at,
            Attempt.finished_at,
        ).where(
            Attempt.case_id.in_(list(opened)),
            Attempt.contact_id.is_(None),
            Attempt.purpose != Purpose.STAFF_BRIDGE.value,
        )
    ).all()
    first: dict[int, datetime] = {}
    for case_id, channel, outcome, answered_by, answered_at, finished_at in rows:
        if channel == Channel.CALL.value:
            human = not (answered_by or "").startswith(("machine", "fax"))
            if outcome not in _CONTACT_OUTCOMES or not human:
                continue
            at = answered_at or finished_at
        else:
            if outcome != Outcome.DELIVERED.value:
                continue
            at = finished_at
        if at is not None and (case_id not in first or at < first[case_id]):
            first[case_id] = at
    return sorted(max(0.0, (at - opened[cid]).total_seconds()) for cid, at in first.items())


def _workload(session: Session, now: datetime, day_start: datetime) -> list[Workload]:
    people = session.scalars(
        select(Staff).where(Staff.active.is_(True)).order_by(Staff.display_name)
    ).all()
    rows = {
        s.id: Workload(
            s.id,
            s.username,
            s.display_name,
            s.role,
            s.area,
            locked_until=s.locked_until if s.locked_until and s.locked_until > now else None,
        )
        for s in people
    }
    by_actor = {f"staff:{s.username}": s.id for s in people}
    claimed = session.execute(
        select(Case.assignee_id, func.count())
        .where(
            Case.assignee_id.is_not(None),
            Case.claim_expires_at > now,
            Case.state != CaseState.CLOSED.value,
            Case.drill.is_(False),
        )
        .group_by(Case.assignee_id)
    ).all()
    for staff_id, count in claimed:
        if staff_id in rows:
            rows[staff_id].claimed = int(count)
    actions: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    for actor, kind, count in session.execute(
        select(Event.actor, Event.kind, func.count())
        .join(Case, Case.id == Event.case_id)
        .where(Event.at >= day_start, Event.actor.like("staff:%"), Case.drill.is_(False))
        .group_by(Event.actor, Event.kind)
    ).all():
        actions[actor] += int(count)
        if kind == "case.closed":
            closes[actor] += int(count)
    for actor, staff_id in by_actor.items():
        rows[staff_id].actions_today = actions[actor]
        rows[staff_id].closed_today = closes[actor]
    for owner_id, count in session.execute(
        select(Callback.owner_id, func.count())
        .where(Callback.done_at.is_(None), Callback.owner_id.is_not(None))
        .group_by(Callback.owner_id)
    ).all():
        if owner_id in rows:
            rows[owner_id].callbacks_open = int(count)
    return list(rows.values())


# --- views --------------------------------------------------------------------------------------


@bp.get("/supervision")
def supervision() -> str:
    require_supervisor()
    now = utcnow()
    with services().sessions() as session:
        report = build_report(session, now, zone())
    return render_template(
        "dashboard/supervision.html",
        report=report,
        buckets=[key for key, _ in AGE_BUCKETS],
        zone_name=services().settings.dashboard.timezone,
        day=report.day_start.strftime("%Y-%m-%d"),
        max_drill=MAX_DRILL,
        duration=duration,
    )


@bp.post("/supervision/drill")
def start_drill() -> BaseResponse:
    staff = require_supervisor()
    svc = services()
    try:
        count = max(1, min(MAX_DRILL, int(request.form.get("count", "3"))))
    except ValueError:
        count = 3
    area = (request.form.get("area") or "").strip() or None
    try:
        posted = post_drill(
            svc.sessions,
            svc.settings,
            staff.actor,
            count=count,
            area=area,
            language=staff.language,
            waker=svc.waker,
        )
    except DrillRefused as refused:
        key = "sup.drill_refused" if refused.reason == "provider" else "sup.drill_no_numbers"
        flash(t(key), "error")
    else:
        flash(t("sup.drill_done", count=len(posted)), "ok")
    return redirect(url_for("dashboard.supervision"), code=303)


@bp.post("/staff/<id:staff_id>/unlock")
def unlock_staff(staff_id: int) -> BaseResponse:
    supervisor = require_supervisor()
    with services().sessions.begin() as session:
        row = session.get(Staff, staff_id)
        if row is None:
            fail(404, "not_found", "error.not_found")
        accounts.unlock(session, row, supervisor.actor)
    flash(t("sup.unlocked"), "ok")
    return redirect(url_for("dashboard.supervision"), code=303)
