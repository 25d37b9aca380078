"""Smoke tests in a real Chromium: the admin logs in, styles load, the workflow list renders."""

import pytest

from tests.browser.conftest import logged_in
from tests.conftest import make_workflow

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows

WORKFLOWS = "/admin/automation/workflow/"


def test_an_org_admin_logs_in_and_sees_the_workflow_list(page, live_server, org, owner, shot):
    make_workflow(org)
    logged_in(page, live_server, owner.username, next_url=WORKFLOWS)

    assert page.url == f"{live_server.url}{WORKFLOWS}"
    assert page.locator("#content h1").inner_text() == "Select workflow to change"
    assert page.locator("#result_list").get_by_role("link", name="Kickoff").is_visible()
    # The admin's stylesheet came through live_server's static files handler.
    header = page.locator("#header").evaluate("e => getComputedStyle(e).backgroundColor")
    assert header not in ("rgba(0, 0, 0, 0)", "transparent"), header
    path = shot(page, "workflow-list", always=True)  # screenshots work, even where a run skips them
    assert path.stat().st_size > 10_000


def test_the_login_page_renders_at_phone_width(phone_page, live_server, shot):
    phone_page.goto(f"{live_server.url}/admin/login/")

    assert phone_page.locator("#id_username").is_visible()
    assert phone_page.locator("#id_password").is_visible()
    assert phone_page.get_by_role("button", name="Log in").is_visible()
    # Nothing sticks out sideways: the responsive admin stylesheet applies.
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    shot(phone_page, "login")
