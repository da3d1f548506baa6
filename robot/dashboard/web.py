"""The dashboard blueprint: who is signed in, CSRF on every POST, errors, template helpers.

Everything here runs only for /dashboard/ requests (blueprint hooks, not app-wide ones), so the
intake API and the Twilio webhooks never pay for the dashboard.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import datetime, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from robot.app import services
from robot.dashboard import i18n
from robot.dashboard.identity import CurrentStaff
from robot.models import Staff, utcnow
from robot.phones import mask

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

#: Endpoints anyone may reach (the sign-in page and the static files).
PUBLIC_ENDPOINTS = frozenset({"dashboard.login", "dashboard.static"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class DashboardError(HTTPException):
    """A refusal shown as a page, or as JSON to scripts: {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.code = status
        self.error_code = code
        self.message = message


def fail(status: int, code: str, message_key: str, **values: object) -> NoReturn:
    raise DashboardError(status, code, t(message_key, **values))


# --- identity -----------------------------------------------------------------------------------


def fingerprint(password_hash: str) -> str:
    """Ties a session to the password it was opened with: changing the password ends it."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def start_session(staff_id: int, password_hash: str) -> None:
    session.clear()  # a new session id-equivalent: nothing from before the sign-in survives
    session["staff_id"] = staff_id
    session["pw"] = fingerprint(password_hash)
    session["login_at"] = time.time()
    session["csrf"] = secrets.token_urlsafe(32)


def current_staff() -> CurrentStaff | None:
    if "staff" in g:
        found: CurrentStaff | None = g.staff
        return found
    g.staff = _load_staff()
    return g.staff  # type: ignore[no-any-return]


def _load_staff() -> CurrentStaff | None:
    staff_id = session.get("staff_id")
    if not isinstance(staff_id, int):
        return None
    hours = services().settings.dashboard.session_hours
    login_at = session.get("login_at")
    if not isinstance(login_at, float | int) or time.time() - login_at > hours * 3600:
        return None
    with services().sessions() as db:
        staff = db.get(Staff, staff_id)
        if (
            staff is None
            or not staff.active
            or not hmac.compare_digest(fingerprint(staff.password_hash), str(session.get("pw")))
        ):
            return None
        default = services().settings.dashboard.default_language
        return CurrentStaff.of(staff, i18n.normalize(staff.language, default))


def me() -> CurrentStaff:
    """The signed-in member of staff (the before_request hook guarantees there is one)."""
    staff = current_staff()
    assert staff is not None
    return staff


def require_supervisor() -> CurrentStaff:
    staff = me()
    if not staff.supervises:
        fail(403, "forbidden", "error.forbidden")
    return staff


def language() -> str:
    staff = current_staff()
    if staff is not None:
        return staff.language
    default = services().settings.dashboard.default_language
    chosen = session.get("lang")
    if isinstance(chosen, str) and chosen in i18n.LANGUAGES:
        return chosen
    best = request.accept_languages.best_match(["zh-CN", "zh", "en-US", "en"])
    return i18n.normalize(best, default) if best else i18n.normalize(default)


def t(key: str, **values: object) -> str:
    return i18n.translate(language(), key, **values)


# --- CSRF ---------------------------------------------------------------------------------------


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _check_csrf() -> None:
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    expected = session.get("csrf")
    if not isinstance(expected, str) or not expected or not hmac.compare_digest(sent, expected):
        fail(403, "csrf", "error.csrf")


# --- hooks --------------------------------------------------------------------------------------


def wants_json() -> bool:
    if request.path.endswith(".json") or request.headers.get("X-Requested-With") == "fetch":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


@bp.before_request
def _guard() -> BaseResponse | None:
    if request.method == "POST":
        _check_csrf()  # before anything else, signed in or not (the sign-in form too)
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if current_staff() is None:
        if wants_json():
            fail(401, "signed_out", "login.expired")
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("dashboard.login", next=target))
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'",
    )
    return response


@bp.errorhandler(DashboardError)
def _dashboard_error(error: DashboardError) -> BaseResponse:
    status = error.code or 400
    case_id = (request.view_args or {}).get("case_id")
    if status in (400, 409) and isinstance(case_id, int) and not wants_json():
        # A form on the case page that cannot be done: say why, on the case page.
        flash(error.message, "error")
        return redirect(url_for("dashboard.case_page", case_id=case_id), code=303)
    return error_response(status, error.error_code, error.message)


def error_response(status: int, code: str, message: str) -> BaseResponse:
    if wants_json():
        response = jsonify({"error": {"code": code, "message": message}})
        response.status_code = status
        return response
    body = render_template("dashboard/error.html", status=status, code=code, message=message)
    return make_response(body, status)


def not_found() -> NoReturn:
    fail(404, "not_found", "error.not_found")


# --- template helpers ---------------------------------------------------------------------------


def zone() -> ZoneInfo:
    found = services().extras.get("dashboard_zone")
    if not isinstance(found, ZoneInfo):
        found = services().extras["dashboard_zone"] = ZoneInfo(
            services().settings.dashboard.timezone
        )
    return found


def local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return value.astimezone(zone()).strftime(fmt) if value else ""


def duration(seconds: float) -> str:
    """1h 05m, 4m 09s, 12s."""
    seconds = int(abs(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def since(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    return duration(((now or utcnow()) - value).total_seconds())


def until(deadline: datetime | None, now: datetime | None = None) -> str:
    if deadline is None:
        return ""
    left = (deadline - (now or utcnow())).total_seconds()
    return t("in", time=duration(left)) if left >= 0 else t("overdue", time=duration(left))


def _label(group: str, value: str | None) -> str:
    return i18n.label(language(), group, value)


@bp.context_processor
def _context() -> dict[str, Any]:
    return {
        "t": t,
        "lang": language(),
        "label": _label,
        "csrf_token": csrf_token,
        "staff": current_staff(),
        "mask": mask,
        "local": local,
        "since": since,
        "until": until,
        "languages": i18n.LANGUAGES,
    }


def safe_next(target: str | None) -> str:
    """Only our own pages: refuse absolute URLs and scheme-relative ones (//evil.example)."""
    if target and target.startswith("/dashboard/") and not target.startswith("//"):
        return target
    return url_for("dashboard.queue")


def ensure_aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=zone())


def claim_span() -> timedelta:
    return timedelta(minutes=services().settings.dashboard.claim_minutes)
