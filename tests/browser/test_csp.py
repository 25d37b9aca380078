"""Content-Security-Policy (config/settings.py CONTENT_SECURITY_POLICY, django-csp): every main
page sends the header and runs under it in Chromium without a single violation or console
error — the admin (list, a change form with its date and link widgets), the automation pages
(list, builder, YAML, graph, versions, publish, health, simulate, impact, templates, runs, a
run, approvals, notifications, bulk holds, a record) and the API: its docs (Swagger UI, whose
inline script and style carry the request's nonce) and a browsable page."""

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from crm_automation.automation.models import WorkflowRun
from crm_automation.crm.services import deal_move_to_stage
from tests.browser.conftest import logged_in, settle
from tests.conftest import drain, make_workflow, stage

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows

LIST = "/crm/automation/"
# Chromium raises this event for every blocked script, style, image, frame, form or connection.
LISTEN = """document.addEventListener("securitypolicyviolation", (e) => {
  (window.__cspViolations = window.__cspViolations || []).push(
    `${e.violatedDirective} blocked ${e.blockedURI || "inline"} in ${e.sourceFile || document.URL}:${e.lineNumber}`);
});"""


def pages(workflow, run, deal) -> list[tuple[str, str]]:
    """(what, address) of the pages to visit, and what each must show once its scripts ran."""
    base = f"{LIST}workflows/{workflow.pk}"
    return [
        ("/admin/", "#content"), ("/admin/automation/workflow/", "#result_list"),
        (f"/admin/crm/deal/{deal.pk}/change/", "#deal_form"), ("/admin/crm/task/add/", "#task_form"),
        (LIST, "main"), (f"{base}/edit/", "main"), (f"{base}/yaml/", "main"), (f"{base}/graph/", "svg"),
        (f"{base}/simulate/", "main"), (f"{base}/impact/", "main"), (f"{base}/versions/", "main"),
        (f"{base}/publish/", "main"), (f"{base}/health/", "main"), (f"{LIST}workflows/new/", "main"),
        (f"{LIST}templates/", "main"), (f"{LIST}runs/", "main"), (f"{LIST}runs/{run.pk}/", "main"),
        (f"{LIST}approvals/", "main"), (f"{LIST}notifications/", "main"), (f"{LIST}bulk-holds/", "main"),
        (f"{LIST}records/deal/{deal.pk}/", "main"),
        ("/api/v1/docs/", ".swagger-ui .info"), ("/api/v1/workflows/", "body"),
    ]


def test_every_main_page_runs_under_the_policy_without_a_violation(page, live_server, org, owner, deal, shot):
    workflow = make_workflow(org)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get(workflow=workflow)
    problems, heard = [], []
    page.on("console", lambda m: heard.append(f"console error: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: heard.append(f"script error: {e}"))
    page.add_init_script(LISTEN)
    logged_in(page, live_server, owner.username)
    for address, shows in pages(workflow, run, deal):
        response = page.goto(f"{live_server.url}{address}")
        assert response.status == 200, (address, response.status)
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self' 'nonce-" in policy or "script-src 'self'" in policy, (address, policy)
        scripts = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
        assert "unsafe" not in scripts and "unsafe-eval" not in policy, (address, policy)
        if not address.startswith("/api/v1/workflows/"):  # DRF's browsable pages alone keep inline styles
            assert "unsafe-inline" not in policy, (address, policy)
        try:
            page.locator(shows).first.wait_for()
            settle(page)
        except PlaywrightTimeout:
            heard.append(f"{shows} never showed: its scripts did not run")
        heard += page.evaluate("window.__cspViolations || []")
        problems += [f"{address}: {p}" for p in heard]
        heard.clear()
    assert problems == [], "\n".join(problems)
    shot(page, "api-docs")


def test_an_inline_script_is_refused(page, live_server, owner):
    """The policy is really enforced: a script slipped into a page does not run (and is reported)."""
    page.add_init_script(LISTEN)
    logged_in(page, live_server, owner.username, next_url=LIST)
    page.evaluate("""() => {
        const s = document.createElement("script");
        s.textContent = "window.__ran = true";
        document.body.appendChild(s);
    }""")
    assert page.evaluate("window.__ran === true") is False
    assert any(v.startswith("script-src") for v in page.evaluate("window.__cspViolations || []"))
