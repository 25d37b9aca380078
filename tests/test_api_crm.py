"""CRM records over the API: deals, leads, contacts, tasks and stages, scoped to the caller's
organization, written through the services (a deal PATCHed to Won fires its workflows), and
never a 500 for any input."""

import pytest

from crm_automation.automation.models import AutomationEvent, WorkflowDecision, WorkflowRun
from crm_automation.crm.models import Contact, Deal, Lead, Stage, Task
from tests.conftest import drain, make_workflow, stage
from tests.test_api_foundation import token_client


@pytest.fixture
def task(org, deal):
    return Task.objects.create(organization=org, title="Call Ada", deal=deal)


@pytest.fixture
def people(owner, teammate, viewer, outsider):
    return {"owner": owner, "teammate": teammate, "viewer": viewer, "outsider": outsider}


@pytest.fixture
def as_owner(owner):
    return token_client("owner")


# One row per endpoint: its record, a body that creates one, a change.
RESOURCES = {
    "deals": ("deal", {"title": "Roof", "stage": "new", "amount": "500.00", "owner": "teammate"},
              {"title": "Website v2"}),
    "leads": ("lead", {"name": "Alan Turing", "email": "alan@example.com"}, {"company": "Bletchley"}),
    "contacts": ("contact", {"first_name": "Charles", "last_name": "Babbage"}, {"phone": "+44 1"}),
    "tasks": ("task", {"title": "Send the quote", "priority": "high"}, {"status": "done"}),
    "stages": ("the_stage", {"slug": "on-hold", "name": "On hold", "order": 9}, {"name": "Fresh"}),
}
# Expected status codes for list, get, create, change, delete.
ALLOWED = {"owner": (200, 200, 201, 200, 204), "teammate": (200, 200, 201, 200, 403),
           "viewer": (200, 200, 403, 403, 403), "outsider": (200, 404, None, 404, 404)}


@pytest.mark.parametrize("person", list(ALLOWED))
@pytest.mark.parametrize("resource", list(RESOURCES))
def test_each_person_may_do_what_their_role_allows(org, people, deal, lead, contact, task, person, resource):
    records = {"deal": deal, "lead": lead, "contact": contact, "task": task, "the_stage": stage(org, "new")}
    name, body, change = RESOURCES[resource]
    record = records[name]
    model = type(record)
    client = token_client(person)
    expected = list(ALLOWED[person])
    if resource == "stages" and person == "teammate":  # the pipeline is the admins' (as in the admin)
        expected[2] = expected[3] = 403
    url = f"/api/v1/{resource}/{record.pk}/"

    listed = client.get(f"/api/v1/{resource}/")
    assert listed.status_code == expected[0]
    assert (str(record.pk) in [str(row["id"]) for row in listed.json()["results"]]) == (person != "outsider")
    assert client.get(url).status_code == expected[1]
    if expected[2] is not None:
        created = client.post(f"/api/v1/{resource}/", body, format="json")
        assert created.status_code == expected[2], created.content
    changed = client.patch(url, change, format="json")
    assert changed.status_code == expected[3], changed.content
    field, value = next(iter(change.items()))
    stored = getattr(model.objects.get(pk=record.pk), field)
    assert (stored == value) == (expected[3] == 200)
    assert client.delete(url).status_code == expected[4]
    assert model.objects.filter(pk=record.pk).exists() == (expected[4] != 204)


def test_an_outsider_reaches_nothing_of_the_organization(org, deal, lead, outsider):
    client = token_client("outsider")
    for url in (f"/api/v1/deals/{deal.pk}/automation/", f"/api/v1/leads/{lead.pk}/automation/"):
        assert client.get(url).status_code == 404
    assert client.post(f"/api/v1/leads/{lead.pk}/convert/", {}, format="json").status_code == 404
    assert client.put(f"/api/v1/deals/{deal.pk}/", {"title": "Mine", "stage": "new"},
                      format="json").status_code == 404
    assert Lead.objects.get(pk=lead.pk).converted_at is None and Deal.objects.get(pk=deal.pk).title == "Website"


def test_nobody_gets_in_without_a_token(org, deal):
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/deals/").status_code == 401
    assert APIClient().get(f"/api/v1/deals/{deal.pk}/").status_code == 401


# --- Deals and their triggers ---------------------------------------------------------------------

def test_a_deal_patched_to_won_fires_its_workflow(org, deal, as_owner):
    workflow = make_workflow(org)
    response = as_owner.patch(f"/api/v1/deals/{deal.pk}/", {"stage": "won"}, format="json")
    assert response.status_code == 200 and response.json()["stage"] == "won"
    event = AutomationEvent.objects.get(kind="deal_stage_change", entity_id=deal.pk)
    proposal, won = stage(org, "proposal").pk, stage(org, "won").pk
    assert event.payload == {"from_stage_id": proposal, "to_stage_id": won, "changed": {"stage": [proposal, won]},
                             "source": "api"}
    drain()
    run = WorkflowRun.objects.get(workflow=workflow, trigger_entity_id=deal.pk)
    assert Task.objects.filter(deal=deal, title="Kick off Website").exists()

    why = as_owner.get(f"/api/v1/deals/{deal.pk}/automation/").json()
    assert [(r["id"], r["workflow"], r["workflow_name"], r["simulated"]) for r in why["runs"]] == \
        [(run.pk, workflow.pk, "Kickoff", False)]
    assert {"status", "started_at", "error"} <= set(why["runs"][0])
    assert [(d["workflow"], d["outcome"], d["event_kind"]) for d in why["decisions"]] == \
        [(workflow.pk, "matched", "deal_stage_change")]
    assert {"reason", "created_at"} <= set(why["decisions"][0])


def test_changing_other_fields_of_a_deal_fires_no_stage_change(org, deal, as_owner):
    response = as_owner.patch(f"/api/v1/deals/{deal.pk}/", {"title": "Web shop", "probability": 60}, format="json")
    assert response.status_code == 200
    assert not AutomationEvent.objects.filter(kind="deal_stage_change").exists()


def test_a_deal_created_over_the_api_fires_deal_created(org, contact, as_owner):
    response = as_owner.post("/api/v1/deals/", {"title": "Roof", "stage": stage(org, "qualified").pk,
                                                "contact": contact.pk, "owner": "owner"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["stage"], body["contact"], body["owner"], body["amount"]) == ("qualified", contact.pk, "owner",
                                                                               "0.00")
    assert AutomationEvent.objects.filter(kind="deal_created", entity_id=body["id"]).exists()


def test_a_deal_sent_back_as_read_is_accepted(deal, as_owner):
    document = as_owner.get(f"/api/v1/deals/{deal.pk}/").json()
    response = as_owner.put(f"/api/v1/deals/{deal.pk}/", {**document, "title": "Website (final)"}, format="json")
    assert response.status_code == 200, response.content
    assert Deal.objects.get(pk=deal.pk).title == "Website (final)"


def test_a_change_made_meanwhile_by_someone_else_is_not_overwritten(org, deal, as_owner):
    Deal.objects.filter(pk=deal.pk).update(stage=stage(org, "negotiation"))
    response = as_owner.patch(f"/api/v1/deals/{deal.pk}/",
                              {"stage": "won", "expected": {"stage": "proposal"}}, format="json")
    assert response.status_code == 409 and "Negotiation" in response.json()["stage"][0]  # a conflict, by field
    assert Deal.objects.get(pk=deal.pk).stage.slug == "negotiation"
    agreed = as_owner.patch(f"/api/v1/deals/{deal.pk}/", {"stage": "won", "expected": {"stage": "negotiation"}},
                            format="json")
    assert agreed.status_code == 200


def test_links_of_another_organization_are_not_found(org, other_org, deal, outsider, as_owner):
    theirs = Contact.objects.create(organization=other_org, first_name="Eve")
    their_deal = Deal.objects.create(organization=other_org, title="Theirs", stage=stage(other_org, "new"))
    for body in ({"stage": stage(other_org, "won").pk}, {"contact": theirs.pk}, {"owner": "outsider"}):
        response = as_owner.patch(f"/api/v1/deals/{deal.pk}/", body, format="json")
        field = next(iter(body))
        assert response.status_code == 400 and "not found in this organization" in response.json()[field][0]
    response = as_owner.post("/api/v1/tasks/", {"title": "Spy", "deal": str(their_deal.pk)}, format="json")
    assert response.status_code == 400 and "not found in this organization" in response.json()["deal"][0]
    assert Deal.objects.get(pk=deal.pk).stage.slug == "proposal" and not Task.objects.exists()


# --- Leads ---------------------------------------------------------------------------------------

def test_converting_a_lead_makes_its_contact_and_deal_once(org, lead, as_owner):
    response = as_owner.post(f"/api/v1/leads/{lead.pk}/convert/", {"stage": "qualified", "amount": "900"},
                             format="json")
    assert response.status_code == 201, response.content
    deal = Deal.objects.get(pk=response.json()["id"])
    assert (deal.stage.slug, deal.amount, deal.contact.email) == ("qualified", 900, "grace@example.com")
    lead.refresh_from_db()
    assert lead.status == "converted" and lead.converted_deal_id == deal.pk
    assert AutomationEvent.objects.filter(kind="lead_converted", entity_id=lead.pk).exists()
    again = as_owner.post(f"/api/v1/leads/{lead.pk}/convert/", {}, format="json")
    assert again.status_code == 409 and "already converted" in again.json()["detail"]  # the lead's state


def test_a_viewer_cannot_convert_a_lead(lead, viewer):
    assert token_client("viewer").post(f"/api/v1/leads/{lead.pk}/convert/", {}, format="json").status_code == 403
    assert Lead.objects.get(pk=lead.pk).converted_at is None


def test_a_lead_becomes_converted_only_by_converting_it(lead, as_owner):
    response = as_owner.patch(f"/api/v1/leads/{lead.pk}/", {"status": "converted"}, format="json")
    assert response.status_code == 400 and "Convert" in response.json()["status"][0]
    created = as_owner.post("/api/v1/leads/", {"name": "Ann", "status": "converted"}, format="json")
    assert created.status_code == 400 and "status" in created.json()


def test_a_lead_shows_why_workflows_ran_for_it(org, teammate):
    make_workflow(org, name="New lead", trigger_type="lead_created", trigger_config={},
                  actions=[{"type": "create_task", "config": {"title": "Call {{lead.name}}"}}])
    make_workflow(org, name="Paused", trigger_type="lead_created", trigger_config={}, activate=False,
                  actions=[{"type": "create_task", "config": {"title": "Never"}}])
    client = token_client("teammate")
    lead_id = client.post("/api/v1/leads/", {"name": "Linus"}, format="json").json()["id"]
    drain()
    why = client.get(f"/api/v1/leads/{lead_id}/automation/").json()
    assert [r["workflow_name"] for r in why["runs"]] == ["New lead"]
    outcomes = {d["workflow_name"]: d["outcome"] for d in why["decisions"]}
    assert outcomes["New lead"] == "matched"
    assert len(why["decisions"]) == WorkflowDecision.objects.filter(entity_id=lead_id).count()


# --- Stages --------------------------------------------------------------------------------------

def test_a_stage_slug_is_unique_in_the_organization(org, as_owner):
    assert as_owner.post("/api/v1/stages/", {"slug": "won", "name": "Won again"}, format="json").status_code == 400
    renamed = as_owner.patch(f"/api/v1/stages/{stage(org, 'new').pk}/", {"slug": "won"}, format="json")
    assert renamed.status_code == 400
    assert Stage.objects.filter(organization=org, slug="won").count() == 1


def test_a_stage_with_deals_cannot_be_deleted(org, deal, as_owner):
    response = as_owner.delete(f"/api/v1/stages/{deal.stage_id}/")
    assert response.status_code == 409 and "deals" in response.json()["detail"]
    assert Stage.objects.filter(pk=deal.stage_id).exists()


# --- Lists ---------------------------------------------------------------------------------------

def test_lists_are_paginated_without_repeating_a_row(org, as_owner):
    Contact.objects.bulk_create(Contact(organization=org, first_name=f"C{i}", company="Same") for i in range(60))
    first = as_owner.get("/api/v1/contacts/?ordering=company").json()
    assert first["count"] == 60 and len(first["results"]) == 50 and first["next"]
    second = as_owner.get(first["next"]).json()
    ids = [c["id"] for c in first["results"] + second["results"]]
    assert len(set(ids)) == 60
    assert len(as_owner.get("/api/v1/contacts/?page_size=7").json()["results"]) == 7
    assert as_owner.get("/api/v1/contacts/?page=99").status_code == 404


def test_deals_are_filtered_searched_and_ordered(org, deal, teammate, as_owner):
    Deal.objects.create(organization=org, title="Roof repair", amount=50, stage=stage(org, "won"), owner=teammate)
    Deal.objects.create(organization=org, title="Roof paint", amount=70, stage=stage(org, "new"))

    def titles(query):
        response = as_owner.get(f"/api/v1/deals/?{query}")
        assert response.status_code == 200, response.content
        return [d["title"] for d in response.json()["results"]]

    assert titles("stage=won") == ["Roof repair"]
    assert titles("owner=teammate") == ["Roof repair"]
    assert titles("search=roof&ordering=-amount") == ["Roof paint", "Roof repair"]
    assert titles("ordering=amount") == ["Roof repair", "Roof paint", "Website"]
    assert titles("ordering=no_such_field&stage=proposal") == ["Website"]


def test_tasks_and_leads_are_filtered(org, deal, lead, task, as_owner):
    Task.objects.create(organization=org, title="Other", status="done")
    assert [t["title"] for t in as_owner.get(f"/api/v1/tasks/?deal={deal.pk}").json()["results"]] == ["Call Ada"]
    assert as_owner.get("/api/v1/tasks/?status=done").json()["count"] == 1
    assert as_owner.get("/api/v1/leads/?status=new&owner=owner").json()["count"] == 1


# --- Bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    ({"title": "X", "stage": "new", "colour": "red"}, "colour"),
    ({"title": "X", "stage": "nope"}, "stage"),
    ({"title": "X", "stage": {"slug": "new"}}, "stage"),
    ({"title": "X", "stage": ["new"]}, "stage"),
    ({"title": "X", "stage": True}, "stage"),
    ({"title": "X", "stage": "n\x00ew"}, "stage"),
    ({"title": "X", "stage": "x" * 10_000}, "stage"),
    ({"title": "X" * 10_000, "stage": "new"}, "title"),
    ({"title": "a\x00b", "stage": "new"}, "title"),
    ({"title": None, "stage": "new"}, "title"),
    ({"title": "X", "stage": "new", "amount": "lots"}, "amount"),
    ({"title": "X", "stage": "new", "amount": "1e400"}, "amount"),
    ({"title": "X", "stage": "new", "amount": "NaN"}, "amount"),
    ({"title": "X", "stage": "new", "probability": 1000}, "probability"),
    ({"title": "X", "stage": "new", "contact": 10**30}, "contact"),
    ({"title": "X", "stage": "new", "contact": "abc"}, "contact"),
    ({"title": "X", "stage": "new", "owner": 12}, "owner"),
    ({"title": "X", "stage": "new", "close_date": "someday"}, "close_date"),
    ({"title": "X", "stage": "new", "expected": {"title": "Y"}}, "expected"),
])
def test_bad_deal_bodies_are_400_naming_the_field(org, as_owner, body, field):
    response = as_owner.post("/api/v1/deals/", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Deal.objects.exists()


@pytest.mark.parametrize(("url", "code"), [
    ("/api/v1/deals/not-a-uuid/", 404),
    ("/api/v1/deals/00000000-0000-0000-0000-000000000000/", 404),
    ("/api/v1/leads/123/automation/", 404),
    ("/api/v1/contacts/99999999999999999999999999/", 404),
    ("/api/v1/tasks/-1/", 404),
    ("/api/v1/stages/abc/", 404),
    ("/api/v1/tasks/?deal=not-a-uuid", 400),
    ("/api/v1/deals/?contact=abc", 400),
    ("/api/v1/deals/?contact=99999999999999999999999", 400),
    ("/api/v1/leads/?status=nope", 400),
    ("/api/v1/deals/?search=a%00b", 400),
    ("/api/v1/deals/?search=" + "+".join(["w"] * 50), 400),
    ("/api/v1/deals/?page=abc", 404),
    ("/api/v1/deals/?page_size=abc", 200),
    ("/api/v1/deals/?ordering=%00", 400),  # a NUL anywhere in a query: crm_automation/web/input_guard.py
])
def test_bad_ids_and_query_parameters_are_never_a_server_error(org, deal, as_owner, url, code):
    assert as_owner.get(url).status_code == code


@pytest.mark.parametrize("payload", [
    "not json", "[1, 2]", '"just a string"', "null", '{"title": ' * 5000 + "1" + "}" * 5000, "[" * 100_000,
    '{"title": "x"' + "y" * 3_000_000 + "}",
], ids=["not-json", "array", "string", "null", "nested-object", "nested-arrays", "3-mb"])
def test_bodies_that_are_not_an_object_are_400(org, deal, as_owner, payload):
    for method in (as_owner.post, as_owner.patch):
        url = "/api/v1/tasks/" if method == as_owner.post else f"/api/v1/deals/{deal.pk}/"
        assert method(url, payload, content_type="application/json").status_code == 400
    assert not Task.objects.exists()
