"""Real-browser tests: Debian's Chromium, driven by Playwright, against pytest-django's `live_server`.

Chromium comes from Debian (`apt-get install chromium`, at /usr/bin/chromium or $CHROMIUM_PATH);
`playwright install` cannot download here and must never be called. Without the executable every
test in this directory is skipped, so `make test` passes on a laptop that has no Chromium.
Everything here carries the `browser` marker (`pytest -m "not browser"` leaves it out) and runs
after all other tests of the session (see pytest_collection_modifyitems below for why).

The database. `live_server` runs Django in a thread of this process with connections of its own,
so it only sees committed rows: browser tests need a transactional database. Say so with
`@pytest.mark.django_db(transaction=True)` (or the `transactional_db` fixture); pytest-django
would make any test that uses `live_server` transactional anyway, but the marker keeps that
visible. The fixtures of tests/conftest.py (`org`, `owner`, `teammate`, `contact`, `deal`, ...)
ask for `db` and work unchanged: in a transactional test they commit, and the tables are
flushed after the test. On SQLite the test database is a file (VAR_DIR/test_crm.sqlite3, see
config/settings.py), not `:memory:`, so the server thread opens its own connection to it; on
PostgreSQL (DATABASE_URL=postgres://...) it is a test_<name> database as usual. The users of
tests/conftest.py are staff with the password "pw-123456"; `settings` changes made by fixtures
(the fast MD5 hasher) apply to the server thread too, they are process-wide.

    @pytest.mark.django_db(transaction=True)
    def test_something(page, live_server, owner, shot):
        logged_in(page, live_server, "owner", PASSWORD)
        page.goto(f"{live_server.url}/admin/")
        shot(page, "dashboard")   # VAR_DIR/screenshots/test_something/01-dashboard.png

Static files: `live_server` serves them through django.contrib.staticfiles' handler (from the
finders, no collectstatic needed), so the admin is styled in screenshots.
"""

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from django.conf import settings

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
MISSING = f"Chromium not found at {CHROMIUM_PATH}; install Debian's chromium package (apt-get install chromium)"
HERE = Path(__file__).resolve().parent
TIMEOUT_MS = 10_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "pw-123456"  # what tests/conftest.py's make_user gives everyone


def chromium_available() -> bool:
    return os.path.isfile(CHROMIUM_PATH) and os.access(CHROMIUM_PATH, os.X_OK)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    # Before the other hooks: `-m "not browser"` deselects by the marker added here.
    skip = None if chromium_available() else pytest.mark.skip(reason=MISSING)
    for item in items:
        if _is_browser_test(item):
            item.add_marker(pytest.mark.browser)
            if skip:
                item.add_marker(skip)  # before any database or server is set up for it
    result = yield
    # After the others (pytest-django sorts by database use): the browser tests run last. While
    # Playwright's sync API is up, this thread has a "running" asyncio loop (see `browser`); no
    # other test may run in that state, so the session-scoped browser must start after them all.
    items[:] = [i for i in items if not _is_browser_test(i)] + [i for i in items if _is_browser_test(i)]
    return result


def _is_browser_test(item) -> bool:
    return HERE in Path(item.path).resolve().parents


@pytest.fixture(scope="session")
def browser():
    if not chromium_available():
        pytest.skip(MISSING)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed; run `make install-dev`")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses to sandbox as root
    # Between its calls Playwright's sync API leaves its asyncio loop marked as running in this
    # thread, and Django then refuses every ORM call of the test and of the database teardown
    # (SynchronousOnlyOperation). The ORM is not used from inside that loop, so the check is
    # switched off for as long as Playwright runs: the browser tests run last (see above).
    unsafe = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, headless=True, args=args)
            yield browser
            browser.close()
    finally:
        if unsafe is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = unsafe


def _page(browser, viewport):
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(TIMEOUT_MS)
    page = track(context.new_page())
    yield page
    context.close()


def track(page):
    """Count the page's requests in flight, for `settle`."""
    in_flight = page._requests_in_flight = [0]

    def done(request):
        in_flight[0] -= 1

    page.on("request", lambda request: in_flight.__setitem__(0, in_flight[0] + 1))
    page.on("requestfinished", done)
    page.on("requestfailed", done)
    return page


def settle(page, quiet_ms: int = 100) -> None:
    """Wait until the page (`track`ed, its document loaded) has had no request in flight for
    `quiet_ms`: what Playwright's "networkidle" does with a fixed 500 ms, which was a third of
    the browser tests' time. Call it after the load event: a page's scripts have started their
    requests by then."""
    in_flight = page._requests_in_flight
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    quiet_since = None
    while True:
        page.wait_for_timeout(20)  # (Playwright hands over its events while it waits)
        now = time.monotonic()
        if in_flight[0] > 0:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_ms / 1000:
            return
        if now > deadline:
            raise AssertionError(f"{page.url}: {in_flight[0]} request(s) still in flight after {TIMEOUT_MS} ms")


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) and page at desktop width."""
    yield from _page(browser, DESKTOP)


@pytest.fixture
def phone_page(browser):
    """A fresh browser context and page at phone width (390x844)."""
    yield from _page(browser, PHONE)


@pytest.fixture
def shot(request):
    """shot(page, name): a full-page PNG at VAR_DIR/screenshots/<test>/<nn>-<name>.png; its path.

    VAR_DIR is var/ unless set, so concurrent runs with their own VAR_DIR do not collide.
    The test's folder is emptied first: what is in it comes from the last run.

    With SCREENSHOTS=0 (what `make test` sets unless given SCREENSHOTS=1) it takes none and
    returns None, unless called with `always=True`: the 140 full-page PNGs of the browser tests
    cost Chromium a third of a second of CPU each, 45 s of every run, and prove nothing the
    assertions do not."""
    folder = Path(settings.VAR_DIR) / "screenshots" / _safe(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    count = 0
    wanted = os.environ.get("SCREENSHOTS", "1") != "0"

    def take(page, name: str, *, always: bool = False) -> Path | None:
        if not (wanted or always):
            return None
        nonlocal count
        count += 1
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{count:02d}-{_safe(name)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def logged_in(page, live_server, username: str, password: str = PASSWORD, next_url: str = "/admin/"):
    """Log in through the admin's own login form at /admin/login/; the page, at `next_url`."""
    page.goto(f"{live_server.url}/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("#login-form [type=submit]")
    if "/admin/login/" in page.url:  # the form came back: say why instead of failing later
        errors = page.locator(".errornote, .errorlist").all_inner_texts()
        raise AssertionError(f"logging in as {username!r} failed: {errors or page.title()}")
    return page


# The builder opens on the canvas; tests written for its list view (the accessible view of the
# same document) open it as a person who chose it does: the choice is kept in the browser.
LIST_VIEW = "if (!localStorage.getItem('crm-builder-view')) localStorage.setItem('crm-builder-view', 'list');"


def prefer_list_view(page):
    page.context.add_init_script(LIST_VIEW)
    return page
