"""Inbound webhook endpoints are part of automation, which the Free plan does not include: on Free
they can be neither made nor changed (API, admin, services), messages to them are refused with a
4xx that says so and nothing is recorded, and the pages show the plan page. And a body may nest
64 levels of objects and arrays, as docs/webhooks.md says, not 65."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from crm_automation.automation import plans
from crm_automation.crm.models import Organization
from crm_automation.webhooks.models import WebhookEndpoint
from crm_automation.webhooks.services import (
    webhook_endpoint_create,
    webhook_endpoint_rotate,
    webhook_endpoint_update,
)
from tests.test_webhooks_inbound import ORDER, nothing_recorded, post, signed

FREE = Organization.Plan.FREE


def on_free(org) -> None:
    Organization.objects.filter(pk=org.pk).update(plan=FREE)
    org.refresh_from_db()


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_services_refuse_to_make_or_change_an_endpoint_on_free(org, owner):
    endpoint, _ = webhook_endpoint_create(organization=org, name="Shop", by=owner)  # made while on Pro
    on_free(org)
    with pytest.raises(plans.NotIncluded, match="Free plan, which does not include automation"):
        webhook_endpoint_create(organization=org, name="Forms", by=owner)
    with pytest.raises(plans.NotIncluded):
        webhook_endpoint_update(endpoint_id=endpoint.pk, by=owner, name="Renamed")
    with pytest.raises(plans.NotIncluded):
        webhook_endpoint_rotate(endpoint_id=endpoint.pk, by=owner)
    endpoint_now = WebhookEndpoint.objects.get()
    assert (endpoint_now.name, endpoint_now.secret) == ("Shop", endpoint.secret)


def test_the_api_answers_403_that_names_the_plan_and_deleting_still_works(org, owner):
    endpoint, _ = webhook_endpoint_create(organization=org, name="Shop", by=owner)
    on_free(org)
    client = api(owner)
    made = client.post("/api/v1/webhook-endpoints/", {"name": "Forms"}, format="json")
    assert made.status_code == 403 and "does not include automation" in made.json()["detail"]
    detail = f"/api/v1/webhook-endpoints/{endpoint.public_id}/"
    changed = client.patch(detail, {"active": False}, format="json")
    assert changed.status_code == 403 and "Free plan" in changed.json()["detail"]
    assert client.post(detail + "rotate/", {}, format="json").status_code == 403
    assert list(WebhookEndpoint.objects.values_list("name", "active")) == [("Shop", True)]
    assert client.delete(detail).status_code == 204  # a downgraded organization may clean up
    assert not WebhookEndpoint.objects.exists()


def test_a_message_to_an_endpoint_of_a_free_organization_is_refused_and_not_recorded(org):
    endpoint, secret = webhook_endpoint_create(organization=org, name="Shop", by=None)
    assert post(endpoint, ORDER, signed(secret, ORDER)).status_code == 202  # on Pro
    on_free(org)
    refused = post(endpoint, ORDER, signed(secret, ORDER, msg_id="msg_2"))
    assert refused.status_code == 403, refused.content
    assert refused.json()["code"] == "plan" and "does not include automation" in refused.json()["detail"]
    org.plan = Organization.Plan.PRO
    org.save(update_fields=["plan"])
    from crm_automation.automation.models import AutomationEvent
    assert AutomationEvent.objects.count() == 1  # only the message accepted on Pro
    assert post(endpoint, ORDER, signed(secret, ORDER, msg_id="msg_2")).status_code == 202


def test_a_bad_signature_is_still_a_401_on_free(org):
    endpoint, _ = webhook_endpoint_create(organization=org, name="Shop", by=None)
    on_free(org)
    forged = post(endpoint, ORDER, signed("whsec_" + "A" * 43 + "=", ORDER))
    assert forged.status_code == 401 and nothing_recorded()  # the plan is told to the sender only


def test_the_admin_hides_endpoints_from_a_free_organization_and_refuses_one_for_it(client, org, owner):
    on_free(org)
    client.force_login(owner)
    assert client.get("/admin/webhooks/webhookendpoint/add/").status_code == 403
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456")
    client.force_login(root)
    page = client.post("/admin/webhooks/webhookendpoint/add/", {"organization": org.pk, "name": "Forms"})
    assert page.status_code == 200 and "does not include automation" in page.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_the_pages_show_the_plan_page(client, org, owner):
    webhook_endpoint_create(organization=org, name="Shop", by=owner)
    on_free(org)
    client.force_login(owner)
    page = client.get("/crm/automation/workflows/new/")
    text = page.content.decode()
    assert page.status_code == 200 and "Automation is a Pro feature" in text and "Shop" not in text


# --- Nesting: 64 levels, as docs/webhooks.md says ------------------------------------------------
@pytest.mark.parametrize("inner", ["", "1", "{}", "\"x\""])
def test_a_body_nested_64_levels_deep_is_accepted(org, inner):
    endpoint, secret = webhook_endpoint_create(organization=org, name="Shop", by=None)
    depth = 64 - (inner == "{}")  # an empty object inside counts as a level of its own
    body = "[" * depth + inner + "]" * depth
    response = post(endpoint, body, signed(secret, body))
    assert response.status_code == 202, response.content


@pytest.mark.parametrize("body", ["[" * 65 + "]" * 65, "[" * 65 + "1" + "]" * 65,
                                  '{"a": ' * 64 + "[]" + "}" * 64, '{"a": ' * 65 + "1" + "}" * 65])
def test_a_body_nested_65_levels_deep_is_refused(org, body):
    endpoint, secret = webhook_endpoint_create(organization=org, name="Shop", by=None)
    response = post(endpoint, body, signed(secret, body))
    assert response.status_code == 400 and "nests more than 64 levels" in response.json()["detail"]
    assert nothing_recorded()
