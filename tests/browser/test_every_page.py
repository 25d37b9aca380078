"""Every page of /crm/automation, the admin's main pages and the API's docs and browsable pages,
as an admin, an ops member and a viewer, in Chromium at 1,366 px: no console error, no uncaught
script error, no horizontal scroll, and the Content-Security-Policy sent and kept (no violation;
config/settings.py CONTENT_SECURITY_POLICY); with data made to break layouts (a 190-character workflow name
without a space, a 200-character deal title, long emails, companies and task titles).

The data is made once for the module and the pages are only read, so one case is one page for
one person (a failure names both) without building the data ninety times. That needs committed
rows that survive between cases, which `live_server` does not allow (it flushes the database
after every test): the module starts its own server thread with pytest-django's LiveServer,
keeps the database unblocked while it runs, and flushes it when it is done.
"""

import re
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.backends.base.creation import TEST_DATABASE_PREFIX
from django.test.utils import override_settings, setup_databases, teardown_databases
from playwright.sync_api import Browser, Page, ViewportSize
from pytest_django.live_server_helper import LiveServer

from crm_automation.automation.models import BulkHold, ImpactPreview, Workflow, WorkflowRun
from crm_automation.automation.services import regression
from crm_automation.automation.services.workflows import workflow_update
from crm_automation.crm.models import Contact, Deal, Lead, Membership, Organization, Project, Task
from crm_automation.crm.services import deal_move_to_stage, leads_import
from tests.browser.conftest import PASSWORD, TIMEOUT_MS, chromium_available, settle, track
from tests.browser.test_automation_pages import WIDEST
from tests.browser.test_csp import LISTEN
from tests.conftest import drain, make_org, make_user, make_workflow, stage
from tests.test_approvals import ASK
from tests.test_graph_engine import edge, task

WIDE: ViewportSize = {"width": 1366, "height": 768}
# Where a tab waits between two pages: a same-origin document that runs nothing. about:blank
# made Chromium start a new renderer process for every page (114 instead of 12 for 53 pages).
QUIET = "/static/favicon.svg"
ROLES = {"admin": Membership.Role.ADMIN, "ops": Membership.Role.OPS, "viewer": Membership.Role.VIEWER}

# Made to break layouts: words longer than any column, in every field a page shows.
LONG_NAME = ("Quarterlyrenewalreminderforenterprisecustomers" * 5)[:190]
LONG_WORD = ("Supercalifragilisticexpialidocious" * 7)[:200]
LONG_EMAIL = f"{'verylongmailbox' * 5}@{'subdomain' * 6}.example.com"


@dataclass(frozen=True)
class Data:
    workflow: Workflow  # live, long-named, has run
    draft: Workflow  # long-named draft (its builder is editable by ops)
    run: WorkflowRun
    deal: Deal
    hold: BulkHold
    contact: Contact
    project: Project
    manual: Workflow  # started by hand on a project, with inputs


def build() -> Data:
    org = make_org("acme")
    Organization.objects.filter(pk=org.pk).update(name=f"Acme {LONG_WORD[:60]}", time_zone="Europe/Berlin")
    users = {role: make_user(role, org, member, first_name=LONG_WORD[:100]) for role, member in ROLES.items()}
    contact = Contact.objects.create(organization=org, first_name=LONG_WORD[:100], last_name=LONG_WORD[:100],
                                     email=LONG_EMAIL, company=LONG_WORD)
    assert not re.search(r"\s", LONG_NAME + LONG_WORD + LONG_EMAIL)  # one word each: nowhere to break but inside
    deal = Deal.objects.create(organization=org, title=LONG_WORD, amount=125000, stage=stage(org, "proposal"),
                               contact=contact, owner=users["admin"])
    workflow = make_workflow(org, name=LONG_NAME, description=LONG_WORD, actions=[
        {"type": "create_task", "label": LONG_WORD[:150],
         "config": {"title": "{{deal.title}} " + LONG_WORD[:80], "assignee": "owner", "due_in_days": 2}},
        {"type": "update_field", "config": {"field": "probability", "value": 100}},
        {"type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Welcome {{deal.title}}",
                                          "body": "Hi {{deal.contact.first_name}} " + LONG_WORD}},
        {"type": "notify", "config": {"title": "Won: {{deal.title}}", "body": LONG_WORD, "recipients": "members"}}])
    ask = {**ASK, "config": {**ASK["config"], "promptText": "Approve the terms of {{deal.title}}?"}}
    make_workflow(org, name=f"Approval {LONG_NAME[:150]}", actions=[
        ask, task("yes", "Send {{deal.title}} terms"), task("no", "Rework {{deal.title}}")],
        graph={"edges": [edge("trigger", "ask"), edge("ask", "yes", "approved"), edge("ask", "no", "rejected")]})
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert Workflow.objects.get(pk=workflow.pk).name == LONG_NAME  # kept whole, not cut
    run = WorkflowRun.objects.get(workflow=workflow)
    assert run.status == "completed", (run.status, run.error)
    # Saved edits waiting to be published, and their regression check done: the Publish page
    # lists the run, its reason and both paths (long words in each).
    edits = Workflow.objects.get(pk=workflow.pk).definition["actions"]
    edits[2] = {**edits[2], "config": {**edits[2]["config"], "subject": "Hello {{deal.title}} " + LONG_WORD[:80]}}
    workflow_update(workflow_id=workflow.pk, by=None, actions=edits)
    check = regression.check_request(Workflow.objects.get(pk=workflow.pk))
    assert check is not None
    regression.check_run(check.pk)
    assert (ImpactPreview.objects.get(pk=check.pk).result or {}).get("differ") == 1
    assert WorkflowRun.objects.filter(status="waiting").exists()  # the approval waits

    held = make_workflow(org, name=f"Welcome {LONG_NAME[:150]}", trigger_type="lead_created",
                         trigger_config={"bulk": {"mode": "hold", "over": 5}},
                         actions=[task("hello", "Welcome {{lead.name}} " + LONG_WORD[:80])])
    leads_import(organization_id=org.pk, by=users["admin"], rows=[
        {"name": f"{LONG_WORD[:190]}{i:02}", "email": f"lead{i}{LONG_EMAIL}", "company": LONG_WORD}
        for i in range(8)])
    drain()
    draft = make_workflow(org, name=f"Draft {LONG_NAME[:180]}", activate=False, description=LONG_WORD,
                          actions=[task("hello", "Welcome {{deal.title}} " + LONG_WORD[:80])])
    Task.objects.create(organization=org, title=LONG_WORD + " " + LONG_WORD[:90], deal=deal)
    Lead.objects.create(organization=org, name=LONG_WORD, email=LONG_EMAIL, company=LONG_WORD)
    project = Project.objects.create(organization=org, name=LONG_WORD, service_type=LONG_WORD[:100], contact=contact,
                                     deal=deal, owner=users["admin"], status="active")
    manual = make_workflow(org, name=f"Visit {LONG_NAME[:150]}", trigger_type="manual_project", trigger_config={
        "inputs": [{"key": "visited_on", "label": LONG_WORD[:100], "kind": "date", "required": True},
                   {"key": "outcome", "kind": "choice", "choices": ["on track", LONG_WORD[:90]]},
                   {"key": "notes", "kind": "long_text"}]}, actions=[task("note", "Visit {{project.name}}")])
    return Data(workflow=workflow, draft=draft, run=run, deal=deal, hold=BulkHold.objects.get(workflow=held),
                contact=contact, project=project, manual=manual)


def ensure_test_database(stack: ExitStack) -> None:
    """pytest-django sets the test database up only when a selected test asks for a database
    (`-k admin-` selects none of this module's): then this module does it, never writing to, or
    flushing, the database the settings name."""
    if not on_test_database():
        # (django-stubs type `aliases` as a mapping; Django takes any collection of aliases)
        made = setup_databases(verbosity=0, interactive=False, aliases={"default"})  # type: ignore[arg-type]
        stack.callback(teardown_databases, made, verbosity=0)
    assert on_test_database(), connection.settings_dict["NAME"]


def on_test_database() -> bool:
    name, test_name = str(connection.settings_dict["NAME"]), connection.settings_dict["TEST"].get("NAME")
    return name == str(test_name) if test_name else name.startswith(TEST_DATABASE_PREFIX)


@pytest.fixture(scope="module")
def site(django_db_setup, django_db_blocker, browser):
    """The data and a server thread for this module: (base URL, Data)."""
    fast = override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
    with django_db_blocker.unblock(), fast, ExitStack() as stack:
        ensure_test_database(stack)
        with override_settings(AUTOMATION={**settings.AUTOMATION, "NUDGE": False}):
            data = build()
            server = LiveServer("localhost")
            server._live_server_modified_settings.enable()
            try:
                yield server.url, data
            finally:
                server._live_server_modified_settings.disable()
                server.stop()
                call_command("flush", interactive=False, verbosity=0)


class Tabs:
    """One logged-in tab per role, made when first needed, that visits that role's pages one
    after the other: each visit is a new document, and a new tab per page cost Chromium about
    three times the CPU (a renderer process started and set up for each of the 93 pages)."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.browser, self.url = browser, url
        self.made: dict[str, Page] = {}

    def __call__(self, role: str) -> Page:
        if role not in self.made:
            context = self.browser.new_context(viewport=WIDE)
            context.set_default_timeout(TIMEOUT_MS)
            context.add_init_script(LISTEN)  # every document notes what the policy blocked
            page = track(context.new_page())
            page.goto(f"{self.url}/admin/login/?next=/admin/")
            page.fill("#id_username", role)
            page.fill("#id_password", PASSWORD)
            with page.expect_navigation():
                page.click("#login-form [type=submit]")
            assert "/admin/login/" not in page.url, f"{role} could not log in"
            self.made[role] = page
        return self.made[role]

    def drop(self, role: str) -> None:
        """Close the role's tab (a failed case may have left it in any state); the next case
        of that role logs in again in a new one."""
        page = self.made.pop(role, None)
        if page is not None:
            page.context.close()


@pytest.fixture(scope="module")
def tabs(browser, site):
    made = Tabs(browser, site[0])
    yield made
    for role in list(made.made):
        made.drop(role)


W = "/crm/automation/workflows/{workflow}"
PAGES = {
    # The automation pages.
    "list": "/crm/automation/",
    "templates": "/crm/automation/templates/",
    "describe": "/crm/automation/workflows/describe/",
    "new": "/crm/automation/workflows/new/",
    "builder": W + "/edit/",
    "builder-draft": "/crm/automation/workflows/{draft}/edit/",
    "yaml": W + "/yaml/",
    "versions": W + "/versions/",
    "publish": W + "/publish/",
    "simulate": W + "/simulate/",
    "graph": W + "/graph/",
    "health": W + "/health/",
    "impact": W + "/impact/",
    "runs": "/crm/automation/runs/",
    "run": "/crm/automation/runs/{run}/",
    "approvals": "/crm/automation/approvals/",
    "notifications": "/crm/automation/notifications/",
    "bulk-holds": "/crm/automation/bulk-holds/",
    "fields": "/crm/automation/fields/",
    "events": "/crm/automation/events/",
    "costs": "/crm/automation/costs/",
    "bulk-hold": "/crm/automation/bulk-holds/{hold}/",
    "record": "/crm/automation/records/deal/{deal}/",
    "record-contact": "/crm/automation/records/contact/{contact}/",
    "record-project": "/crm/automation/records/project/{project}/",
    "start": "/crm/automation/records/project/{project}/start/?workflow={manual}",
    # The admin's main pages.
    "admin-index": "/admin/",
    "admin-workflows": "/admin/automation/workflow/",
    "admin-custom-fields": "/admin/crm/customfield/",
    "admin-workflow": "/admin/automation/workflow/{workflow}/change/",
    "admin-runs": "/admin/automation/workflowrun/",
    "admin-run": "/admin/automation/workflowrun/{run}/change/",
    "admin-events": "/admin/automation/automationevent/",
    "admin-prices": "/admin/automation/unitprices/",
    "admin-lifecycle-events": "/admin/automation/lifecycleevent/",
    "admin-event-subscriptions": "/admin/webhooks/eventsubscription/",
    "admin-event-subscription-add": "/admin/webhooks/eventsubscription/add/",
    "admin-deals": "/admin/crm/deal/",
    "admin-deal": "/admin/crm/deal/{deal}/change/",
    "admin-leads": "/admin/crm/lead/",
    "admin-contacts": "/admin/crm/contact/",
    "admin-tasks": "/admin/crm/task/",
    "admin-projects": "/admin/crm/project/",
    "admin-project": "/admin/crm/project/{project}/change/",
    "admin-business-events": "/admin/crm/businessevent/",
    "admin-task-add": "/admin/crm/task/add/",  # a form with the date and link widgets' scripts
    # The API's pages: the docs (Swagger UI, its inline script and style carrying the request's
    # nonce) and a browsable page.
    "api-docs": "/api/v1/docs/",
    "api-workflows": "/api/v1/workflows/",
}
# What a page shows only once its scripts ran (the others render on the server).
SHOWS = {"graph": "svg", "api-docs": ".swagger-ui .info"}
# Pages a role may not use answer 403 with a page saying why (and are checked like any other).
REFUSED = {("viewer", "describe"), ("viewer", "new"), ("viewer", "admin-task-add"), ("viewer", "start"),
           # event subscriptions hold webhook targets (secrets): organization admins only
           *((role, page) for role in ("ops", "viewer")
             for page in ("admin-event-subscriptions", "admin-event-subscription-add"))}
# Pages known to fail because of work under way elsewhere, each with the reason (none at the
# moment).
KNOWN: dict[tuple[str, str], str] = {}


# Pages that are the same for everyone, so one role is enough (Swagger UI costs seconds a visit).
ADMIN_ONLY = {"api-docs", "api-workflows"}


def cases():
    for role in ROLES:
        for name in PAGES:
            if name in ADMIN_ONLY and role != "admin":
                continue
            marks = [pytest.mark.xfail(reason=KNOWN[role, name], strict=False)] if (role, name) in KNOWN else []
            yield pytest.param(role, name, id=f"{role}-{name}", marks=marks)


def path_of(name: str, data: Data) -> str:
    return PAGES[name].format(workflow=data.workflow.pk, draft=data.draft.pk, run=data.run.pk,
                              hold=data.hold.pk, deal=data.deal.pk, contact=data.contact.pk, project=data.project.pk,
                              manual=data.manual.pk)


@pytest.mark.skipif(not chromium_available(), reason="no Chromium")
@pytest.mark.parametrize(("role", "name"), cases())
def test_the_page_has_no_console_error_and_no_horizontal_scroll(site, tabs, role, name, shot):
    url, data = site
    page = tabs(role)
    errors: list[str] = []

    def console(message):
        if message.type == "error":
            errors.append(f"console {message.type}: {message.text} ({message.location.get('url', '')})")

    def pageerror(error):
        errors.append(f"pageerror: {error}")

    page.on("console", console)
    page.on("pageerror", pageerror)
    passed = False
    try:
        response = page.goto(url + path_of(name, data))
        if name in SHOWS and (role, name) not in REFUSED:
            page.locator(SHOWS[name]).first.wait_for()
        settle(page)
        expected = 403 if (role, name) in REFUSED else 200
        assert response.status == expected, f"{page.url}: {response.status}, expected {expected}"
        policy = response.headers.get("content-security-policy", "")
        scripts = next((d for d in policy.split(";") if d.strip().startswith("script-src")), "")
        assert scripts.strip().startswith("script-src 'self'"), f"{page.url}: {policy!r}"
        assert "unsafe" not in scripts and "unsafe-eval" not in policy, f"{page.url}: {policy!r}"
        if name != "api-workflows":  # DRF's browsable pages alone keep inline styles
            assert "unsafe-inline" not in policy, f"{page.url}: {policy!r}"
        errors += [f"CSP: {v}" for v in page.evaluate("window.__cspViolations || []")]
        if expected == 403:  # Chromium reports the refused document itself as a failed resource
            errors[:] = [e for e in errors if not re.search(r"status of 403 .*\(" + re.escape(page.url) + r"\)$", e)]
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        sticking_out = page.evaluate(WIDEST) if width[0] > width[1] else []
        shot(page, f"{role}-{name}")
        assert not errors, "\n".join(errors)
        assert width[0] <= width[1], f"{page.url} is {width[0]} px wide in a {width[1]} px window: {sticking_out}"
        passed = True
    finally:
        if passed:  # leave the page here, so nothing it does later is counted for the next one
            page.goto(url + QUIET)
            page.remove_listener("console", console)
            page.remove_listener("pageerror", pageerror)
        else:
            tabs.drop(role)
