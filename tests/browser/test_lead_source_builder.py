"""An ops manager builds "Lead converted → Lead source is Referral → email" on the canvas, by
mouse, the condition's value picked from the lead source's choices (not typed); saved, activated,
and a referred lead's conversion sends the email while a website lead's does not."""

import pytest
from playwright.sync_api import expect

from crm_automation.automation.models import Workflow
from crm_automation.crm.models import EmailMessage, Lead
from crm_automation.crm.services import lead_convert
from tests.browser.conftest import PASSWORD, logged_in
from tests.browser.test_automation_pages import say, watch  # noqa: F401 (the fixture)
from tests.browser.test_canvas_builder import Canvas, wide_page  # noqa: F401 (the fixture)
from tests.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows


def test_lead_converted_then_lead_source_is_referral_then_email(wide_page, watch, live_server, org, owner,  # noqa: F811
                                                                shot):
    page = wide_page
    watch.on(page)
    logged_in(page, live_server, "owner", PASSWORD, next_url="/crm/automation/workflows/new/")
    canvas = Canvas(page)
    page.locator("#wf-name").fill("Referral email")
    canvas.open("trigger")
    canvas.field("Starts when").select_option("lead_converted")
    top = canvas.box(canvas.node("trigger"))
    x, y = top["x"] + top["width"] / 2, top["y"] + top["height"] + 120
    check = canvas.drop("condition", x, y)
    canvas.connect("trigger", None, check)
    mail = canvas.drop("send_email", x - 120, y + 200)
    canvas.connect(check, "condition-true", mail)

    canvas.open(check)
    canvas.field("Name of this step").fill("Came by referral")
    panel = page.locator("#node-panel")
    panel.get_by_label("Field of condition 1").select_option("lead.source")
    panel.get_by_label("Operator of condition 1").select_option("eq")
    value = panel.get_by_label("Value of condition 1")
    expect(value.locator("option")).to_have_count(10)  # "Choose a source…" and the nine sources
    value.select_option(label="Referral")
    expect(canvas.node(check)).to_contain_text("Lead › Source equals Referral")  # the choice's name
    canvas.open(mail)
    canvas.field("Subject").fill("Thanks for coming by referral, {{lead.name}}")
    canvas.field("Message").fill("Whoever sent you: thank them from us.")
    shot(page, "built", always=True)
    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url("**/edit/?saved=1")
    workflow = Workflow.objects.get(organization=org, name="Referral email")
    rule = next(a for a in workflow.definition["actions"] if a["type"] == "condition")["config"]["rules"][0]
    assert rule == {"field": "lead.source", "operator": "eq", "value": "referral"}, say(watch, str(rule))
    page.get_by_role("button", name="Activate").click()
    expect(page.locator(".badge, .status").first).to_contain_text("Activ")

    for name, source in (("Ada", "referral"), ("Bo", "website")):
        lead_convert(lead=Lead.objects.create(organization=org, name=name, email=f"{name.lower()}@example.com",
                                              source=source, owner=owner))
    drain()
    assert list(EmailMessage.objects.values_list("to", "subject")) == [
        ("ada@example.com", "Thanks for coming by referral, Ada")]
    assert not watch.page_errors and not watch.console, say(watch, "script errors while building")
