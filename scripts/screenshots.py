"""Screenshots of the dashboard's queue and case page, taken from the running service.

By default this starts the whole stack in-process (web app, worker, emulator, a fresh SQLite
database, exactly as the e2e tests do), posts a few warnings the robot escalates, signs in as an
operator and saves docs/screenshots/queue.png and docs/screenshots/case.png.

    uv run python scripts/screenshots.py
    uv run python scripts/screenshots.py --base-url http://127.0.0.1:8000 \\
        --username ana --password-file ana.pw [--case 12]     # against a running `robot run`

Chromium is Debian's /usr/bin/chromium (never downloaded). The interface is shown in English:
a minimal Debian image has no CJK fonts, and Chinese would come out as boxes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUT = ROOT / "docs" / "screenshots"
DEMO_USER = "wang.fang"
DEMO_PASSWORD = "screenshots-only-password"
#: (number, risk, fraud type, area): emulator callees that end with a human (see callees.py).
DEMO_WARNINGS = [
    ("+8613800138002", "high", "fake_police", "Gulou"),  # presses 3: already paid -> critical
    ("+8613800138006", "high", "fake_investment", "Gulou"),  # busy: may be on the fraud call
    ("+8613800138005", "high", "task_rebate", "Xuanwu"),  # never answers
    ("+8613800138003", "medium", "fake_customer_service", "Gulou"),  # answers, presses nothing
    ("+8613800138007", "high", "romance", "Qinhuai"),  # answering machine
]


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="A running service; default: start one in-process.")
    parser.add_argument("--username", default=DEMO_USER)
    parser.add_argument("--password-file", type=Path)
    parser.add_argument("--case", type=int, help="Case to photograph (default: the first row).")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.base_url:
        if not args.password_file:
            parser.error("--password-file is required with --base-url")
        password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        shoot(args.base_url, args.username, password, args.case, args.out)
        return 0
    with demo_stack() as (base_url, case_id):
        shoot(base_url, DEMO_USER, DEMO_PASSWORD, args.case or case_id, args.out)
    return 0


@contextmanager
def demo_stack() -> Iterator[tuple[str, int]]:
    """The e2e stack on a throwaway SQLite database, with escalated cases and a drill."""
    from robot import migrate
    from robot.config import load_settings
    from robot.dashboard.accounts import add_staff
    from robot.dashboard.drill import post_drill
    from robot.db import create_db_engine
    from tests.e2e.conftest import start_stack

    with tempfile.TemporaryDirectory(prefix="robot-screenshots-") as tmp:
        base = load_settings(environ={})
        settings = replace(
            base,
            database=replace(base.database, url=f"sqlite:///{tmp}/robot.db"),
            voice=replace(base.voice, cache_dir=f"{tmp}/voice-cache"),
            dashboard=replace(base.dashboard, poll_seconds=1.0),
            # Policy minutes pass 120x faster: the medium case reaches the queue in 15 s.
            time_scale=120.0,
        )
        engine = create_db_engine(settings.database)
        migrate.upgrade(engine)
        engine.dispose()
        stacks = start_stack(settings)
        stack = next(stacks)
        try:
            with stack.sessions.begin() as session:
                add_staff(
                    session,
                    DEMO_USER,
                    DEMO_PASSWORD,
                    display_name="Wang Fang",
                    area=None,
                    language="en-US",
                    phone="+8613800138003",
                )
                add_staff(session, "li.lei", DEMO_PASSWORD, display_name="Li Lei", language="en-US")
            case_ids = []
            for phone, risk, fraud_type, area in DEMO_WARNINGS:
                posted = stack.post_warning(
                    phone=phone,
                    risk=risk,
                    fraud_type=fraud_type,
                    area=area,
                    trigger="fraud_call" if risk == "high" else "fraud_site",
                    language="en-US",  # no CJK fonts on a minimal image (see the docstring)
                    contacts=[{"phone": "+8613800138000", "relation": "child"}],
                )
                case_ids.append(posted["case_id"])
            post_drill(
                stack.sessions,
                stack.settings,
                "system:screenshots",
                count=1,
                digits=["4"],
                area="Gulou",
                waker=None,
            )
            wait_escalated(stack, case_ids)
            book_callback(stack, case_ids[2])
            yield stack.base_url, case_ids[0]
        finally:
            stacks.close()


def book_callback(stack: Any, case_id: int) -> None:
    """A callback for anyone, due in ten minutes, as a colleague would have booked it."""
    from sqlalchemy import select

    from robot.models import Callback, Staff, utcnow
    from robot.timeline import record

    due = utcnow() + timedelta(minutes=10)
    with stack.sessions.begin() as session:
        colleague = session.scalar(select(Staff).where(Staff.username == "li.lei"))
        note = "daughter says he is home after 18:00"
        session.add(Callback(case_id=case_id, due_at=due, created_by_id=colleague.id, note=note))
        record(
            session,
            case_id,
            "callback.scheduled",
            "staff:li.lei",
            {"due_at": due.isoformat(), "owner": "anyone", "note": note},
        )


def wait_escalated(stack: Any, case_ids: list[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cases = [stack.case(case_id) for case_id in case_ids]
        if all(case["state"] == "escalated" for case in cases):
            time.sleep(2.0)  # let the last callbacks land on the timelines
            return
        time.sleep(0.3)
    states = {case["id"]: case["state"] for case in cases}
    raise SystemExit(f"the robot did not escalate every demo case in {timeout:g}s: {states}")


def shoot(base_url: str, username: str, password: str, case_id: int | None, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                locale="en-US", viewport={"width": 1440, "height": 900}, device_scale_factor=1
            )
            page = context.new_page()
            page.goto(f"{base_url}/dashboard/login")
            page.fill("#username", username)
            page.fill("#password", password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base_url}/dashboard/")
            page.wait_for_selector("#queue tbody tr")
            page.wait_for_timeout(1500)  # one refresh from queue.json
            page.screenshot(path=str(out / "queue.png"), full_page=True)
            print(f"saved {out / 'queue.png'}")

            if case_id is None:
                href = page.locator("#queue tbody tr td.case a").first.get_attribute("href")
                assert href, "the queue is empty: nothing to photograph"
                case_url = f"{base_url}{href}"
            else:
                case_url = f"{base_url}/dashboard/cases/{case_id}"
            page.goto(case_url)
            claim = page.locator("#claim")
            if claim.count():
                claim.click()
                page.wait_for_load_state()
            page.select_option("#disposition-choice", "already_paid")
            page.fill("#disposition-note", "Transferred 20,000 CNY at 14:05; advised to call 110.")
            # The top of the page: header, script, actions, attempts and the start of the timeline.
            page.set_viewport_size({"width": 1440, "height": 1700})
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(out / "case.png"))
            print(f"saved {out / 'case.png'}")
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
