"""Signing in and out. Each attempt is an event (case_id NULL) signed "staff:NAME"."""

from __future__ import annotations

import time

from flask import redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from robot.app import services
from robot.dashboard.accounts import LoginStatus, attempt_login, failure_delay
from robot.dashboard.web import (
    bp,
    current_staff,
    local,
    safe_next,
    start_session,
    t,
)
from robot.models import utcnow
from robot.timeline import record


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | tuple[str, int] | str:
    next_url = request.values.get("next")
    if request.method == "GET":
        if current_staff() is not None:
            return redirect(safe_next(next_url))
        return render_template("dashboard/login.html", next=next_url or "", error=None)
    svc = services()
    username = (request.form.get("username") or "").strip()[:200]
    password = request.form.get("password") or ""
    result = attempt_login(svc.sessions, username, password, svc.settings.dashboard)
    if result.status is LoginStatus.OK:
        assert result.staff_id is not None
        start_session(result.staff_id, result.password_hash)
        return redirect(safe_next(next_url), code=303)
    # Slow every failure down a little more; the lockout stops the guessing altogether.
    time.sleep(failure_delay(result, svc.settings.dashboard))
    if result.status is LoginStatus.LOCKED and result.locked_until is not None:
        error = t("login.locked", until=local(result.locked_until, "%H:%M"))
    else:
        error = t("login.failed")
    page = render_template("dashboard/login.html", next=next_url or "", error=error, user=username)
    return page, 401


@bp.post("/logout")
def logout() -> BaseResponse:
    staff = current_staff()
    if staff is not None:
        with services().sessions.begin() as db:
            record(db, None, "staff.logout", staff.actor, {}, at=utcnow())
    session.clear()
    return redirect(url_for("dashboard.login"), code=303)
