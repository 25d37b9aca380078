"""Fields of the organization's own (crm/custom_fields.py): defined per organization on deals,
leads and contacts; every value checked by its kind on every write path (a model save, the
API, the admin), stored normalized; read by workflows as {{deal.custom.<key>}} and in conditions;
a change is part of the record's one event; a field a live workflow reads is not deleted."""

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from crm_automation.automation.models import AutomationEvent, Workflow, WorkflowRun
from crm_automation.crm.models import Contact, CustomField, Deal, EmailMessage, Lead, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage


def field(org, entity, key, kind, **extra) -> CustomField:
    made = CustomField(organization=org, entity=entity, key=key, label=extra.pop("label", key.title()), kind=kind,
                       **extra)
    made.full_clean()
    made.save()
    return made


@pytest.mark.parametrize(("kind", "given", "stored"), [
    ("text", "  Blue ", "Blue"),
    ("number", "12", 12),
    ("number", 2.5, 2.5),
    ("money", "1200.456", "1200.46"),
    ("date", "2026-12-24", "2026-12-24"),
    ("datetime", "2026-12-24T09:30", "2026-12-24T09:30:00"),
    ("boolean", "yes", True),
    ("boolean", False, False),
    ("url", "https://example.com/x", "https://example.com/x"),
    ("email", "ada@example.com", "ada@example.com"),
    ("phone", "+44 20 7946 0000", "+44 20 7946 0000"),
])
def test_values_are_stored_by_their_kind(org, deal, kind, given, stored):
    field(org, "deal", "extra", kind)
    deal.custom = {"extra": given}
    deal.save()
    deal.refresh_from_db()
    assert deal.custom == {"extra": stored}


@pytest.mark.parametrize(("kind", "given", "says"), [
    ("number", "lots", "is not a number"),
    ("number", True, "must be a number"),
    ("date", "24/12/2026", "is not a date"),
    ("boolean", "maybe", "must be yes or no"),
    ("url", "javascript:alert(1)", "is not a web address"),
    ("email", "not-an-email", "is not an email address"),
    ("phone", "call me", "is not a phone number"),
    ("text", "x" * 201, "at most 200"),
])
def test_a_value_of_the_wrong_kind_is_refused_and_nothing_is_saved(org, deal, kind, given, says):
    field(org, "deal", "extra", kind)
    deal.custom = {"extra": given}
    with pytest.raises(ValidationError) as caught:
        deal.save()
    assert says in str(caught.value.message_dict["custom.extra"])
    deal.refresh_from_db()
    assert deal.custom == {}


def test_choices_unknown_keys_users_and_other_organizations(org, other_org, owner, deal, outsider):
    field(org, "deal", "tier", "choice", choices=["Gold", "Silver"])
    field(org, "deal", "tags", "choices", choices=["urgent", "vip", "renewal"])
    field(org, "deal", "manager", "user")
    field(other_org, "deal", "secret", "text")  # theirs: not a field of ours
    deal.custom = {"tier": "gold", "tags": ["renewal", "urgent", "urgent"], "manager": owner.username}
    deal.save()
    deal.refresh_from_db()
    assert deal.custom == {"tier": "Gold", "tags": ["urgent", "renewal"], "manager": owner.username}
    for values, place in (({"tier": "Bronze"}, "custom.tier"), ({"secret": "x"}, "custom.secret"),
                          ({"manager": outsider.username}, "custom.manager")):
        deal.custom = values
        with pytest.raises(ValidationError) as caught:
            deal.save()
        assert place in caught.value.message_dict


def test_a_definition_is_checked_and_its_key_and_kind_never_change(org):
    for key, kind, choices, place in (("title", "text", [], "key"), ("Bad Key", "text", [], "key"),
                                      ("tier", "choice", [], "choices"), ("note", "text", ["x"], "choices"),
                                      ("tier", "choice", ["a", "A"], "choices")):
        with pytest.raises(ValidationError) as caught:
            field(org, "deal", key, kind, choices=choices)
        assert place in caught.value.message_dict, (key, kind)
    made = field(org, "deal", "budget", "money", label="Budget")
    made.label = "Budget (EUR)"  # a rename: the key stays
    made.full_clean()
    made.save()
    made.key = "budget_eur"
    with pytest.raises(ValidationError, match="never changes"):
        made.full_clean()


def test_workflows_read_custom_fields_in_templates_and_conditions(org, owner, deal):
    field(org, "deal", "budget", "money", label="Budget")
    field(org, "contact", "nickname", "text")
    deal.custom = {"budget": "25000"}
    deal.save()
    assert deal.contact is not None
    deal.contact.custom = {"nickname": "Countess"}
    deal.contact.save()
    make_workflow(org, actions=[
        {"id": "big", "type": "condition", "label": "Big budget", "config": {
            "combinator": "and", "rules": [{"field": "deal.custom.budget", "operator": "gt", "value": 20000}]}},
        {"id": "task", "type": "create_task", "label": "Call",
         "config": {"title": "Call {{deal.contact.custom.nickname}} about {{deal.custom.budget}}"}}],
        graph={"edges": [{"source": "trigger", "target": "big"},
                         {"source": "big", "target": "task", "sourceHandle": "condition-true"}]})
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert WorkflowRun.objects.get().status == "completed"
    assert list(Task.objects.values_list("title", flat=True)) == ["Call Countess about 25000.00"]


def test_a_custom_change_is_part_of_the_records_one_event(org, deal):
    field(org, "deal", "budget", "number")
    before = AutomationEvent.objects.count()
    deal.custom = {"budget": 10}
    deal.title = "Website, phase 2"
    deal.save()
    (event,) = AutomationEvent.objects.order_by("id")[before:]  # (no default order: OFFSET needs one)
    assert event.kind == "deal_updated"
    assert event.payload["changed"]["custom"] == [{}, {"budget": 10}]
    assert event.payload["changed"]["title"] == ["Website", "Website, phase 2"]


def test_the_api_reads_and_writes_custom_values_and_names_a_bad_one(org, owner, deal):
    field(org, "deal", "budget", "number")
    client = APIClient()
    client.force_authenticate(owner)
    changed = client.patch(f"/api/v1/deals/{deal.pk}/", {"custom": {"budget": "12"}}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["custom"] == {"budget": 12}
    bad = client.patch(f"/api/v1/deals/{deal.pk}/", {"custom": {"budget": "many"}}, format="json")
    assert bad.status_code == 400 and "is not a number" in str(bad.json())
    assert Deal.objects.get(pk=deal.pk).custom == {"budget": 12}


def test_a_field_a_live_workflow_reads_is_not_deleted_and_the_workflow_is_named(org, deal):
    budget = field(org, "deal", "budget", "number")
    spare = field(org, "deal", "spare", "text")
    make_workflow(org, name="Budget check", actions=[
        {"type": "create_task", "config": {"title": "Budget {{deal.custom.budget}}"}}])
    with pytest.raises(ValidationError, match="used by the live workflow\\(s\\) Budget check"):
        budget.delete()
    spare.delete()
    assert list(CustomField.objects.values_list("key", flat=True)) == ["budget"]


def test_leads_and_contacts_have_their_own_fields(org, owner):
    field(org, "lead", "referrer", "text")
    field(org, "contact", "birthday", "date")
    lead = Lead.objects.create(organization=org, name="Ada", custom={"referrer": "Bo"})
    contact = Contact.objects.create(organization=org, first_name="Cy", custom={"birthday": "1990-02-03"})
    assert (lead.custom, contact.custom) == ({"referrer": "Bo"}, {"birthday": "1990-02-03"})
    with pytest.raises(ValidationError):
        Lead.objects.create(organization=org, name="Di", custom={"birthday": "1990-02-03"})  # a contact's field
    assert not EmailMessage.objects.exists()


def test_the_builder_offers_own_fields_and_the_record_page_shows_them(org, owner, deal):
    import json

    from django.test import Client

    field(org, "deal", "tier", "choice", choices=["Gold", "Silver"], label="Tier")
    field(org, "contact", "nickname", "text", label="Nickname")
    deal.custom = {"tier": "Gold"}
    deal.save()
    client = Client()
    client.force_login(owner)
    page = client.get("/crm/automation/workflows/new/").content.decode()
    data = json.loads(page.split('<script id="builder-data" type="application/json">')[1].split("</script>")[0])
    catalog = data["catalog"]
    assert catalog["fields"]["deal_stage_change"]["deal.custom.tier"] == "str"
    assert catalog["fields"]["deal_stage_change"]["deal.contact.custom.nickname"] == "str"
    assert "deal.custom.tier" not in catalog["fields"]["lead_created"]
    assert catalog["names"]["deal.custom.tier"] == "Deal › Tier"
    assert catalog["custom_choices"] == {"deal.custom.tier": ["Gold", "Silver"]}
    record = client.get(f"/crm/automation/records/deal/{deal.pk}/").content.decode()
    assert "<dt>Tier</dt><dd>Gold</dd>" in record


def test_the_admin_form_says_what_is_wrong_with_a_value(org, owner, deal):
    from django.test import Client

    field(org, "deal", "budget", "number")
    client = Client()
    client.force_login(owner)
    url = f"/admin/crm/deal/{deal.pk}/change/"
    form = {"title": deal.title, "amount": "100", "stage": deal.stage_id, "probability": "10",
            "contact": deal.contact_id, "owner": owner.pk, "organization": org.pk, "custom": '{"budget": "lots"}'}
    answer = client.post(url, form)
    assert answer.status_code == 200 and "budget: Budget: “lots” is not a number" in answer.content.decode()
    assert Deal.objects.get(pk=deal.pk).custom == {}
    answer = client.post(url, {**form, "custom": '{"budget": "7"}'})
    assert answer.status_code == 302, answer.content.decode()[:3000]
    assert Deal.objects.get(pk=deal.pk).custom == {"budget": 7}


def test_the_api_lists_records_by_an_own_fields_value(org, owner, deal, other_org):
    from crm_automation.crm.models import Stage

    field(org, "deal", "tier", "choice", choices=["Gold", "Silver"])
    field(org, "deal", "tags", "choices", choices=["urgent", "vip"])
    field(org, "deal", "signed", "boolean")
    other = Deal.objects.create(organization=org, title="Other", stage=Stage.objects.filter(organization=org).first(),
                                custom={"tier": "Silver", "tags": ["vip"], "signed": False})
    deal.custom = {"tier": "Gold", "tags": ["urgent", "vip"], "signed": True}
    deal.save()
    client = APIClient()
    client.force_authenticate(owner)

    def ids(**query) -> list[str]:
        answer = client.get("/api/v1/deals/", query)
        assert answer.status_code == 200, answer.content
        return sorted(row["id"] for row in answer.json()["results"])

    assert ids(**{"custom.tier": "gold"}) == [str(deal.pk)]  # as stored: "Gold"
    assert ids(**{"custom.tags": "vip"}) == sorted([str(deal.pk), str(other.pk)])
    assert ids(**{"custom.tags": "urgent", "custom.signed": "yes"}) == [str(deal.pk)]
    assert ids(**{"custom.signed": "no"}) == [str(other.pk)]
    bad = client.get("/api/v1/deals/", {"custom.tier": "Bronze"})
    assert bad.status_code == 400 and "not one of its choices" in str(bad.json())
    unknown = client.get("/api/v1/deals/", {"custom.nope": "x"})
    assert unknown.status_code == 400 and "custom.nope" in str(unknown.json())


def test_update_field_sets_an_own_field_and_keeps_the_others(org, owner, deal):
    field(org, "deal", "tier", "choice", choices=["Gold", "Silver"])
    field(org, "deal", "note", "text")
    deal.custom = {"note": "keep me"}
    deal.save()
    make_workflow(org, actions=[
        {"type": "update_field", "label": "Tier", "config": {"field": "custom.tier", "value": "gold"}},
        {"type": "update_field", "label": "Note", "config": {"field": "custom.note", "value": "Won: {{deal.title}}"}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert WorkflowRun.objects.get().status == "completed"
    deal.refresh_from_db()
    assert deal.custom == {"note": f"Won: {deal.title}", "tier": "Gold"}
    from crm_automation.automation.models import FieldChange
    assert set(FieldChange.objects.values_list("field", "old_value", "new_value")) == {
        ("custom.tier", None, "Gold"), ("custom.note", "keep me", f"Won: {deal.title}")}
    for config, says in (({"field": "custom.tier", "value": "Bronze"}, "not one of its choices"),
                         ({"field": "custom.nope", "value": "x"}, "is not a field of this organization's deals"),
                         ({"field": "custom.tier", "value": "{{deal.title}}"}, "templates fill text fields only")):
        with pytest.raises(ValidationError, match=says):
            make_workflow(org, actions=[{"type": "update_field", "config": config}])


def test_a_condition_on_an_own_field_is_checked_by_its_kind(org):
    field(org, "deal", "tier", "choice", choices=["Gold", "Silver"], label="Tier")
    field(org, "deal", "note", "text")
    field(org, "deal", "budget", "money")

    def rule(field_path, operator, value):
        return [{"id": "check", "type": "condition", "config": {"combinator": "and", "rules": [
            {"field": field_path, "operator": operator, "value": value}]}}]

    make_workflow(org, actions=rule("deal.custom.budget", "gt", 1000))  # a number: ordering is fine
    make_workflow(org, actions=rule("deal.custom.tier", "eq", "gold"))
    with pytest.raises(ValidationError, match="is not a choice of “Tier”; use one of Gold, Silver"):
        make_workflow(org, actions=rule("deal.custom.tier", "eq", "Bronze"))
    with pytest.raises(ValidationError, match="compares numbers or dates"):
        make_workflow(org, actions=rule("deal.custom.note", "gt", 3))


def test_a_deal_updated_workflow_may_watch_one_own_field_and_cross_a_threshold(org, deal):
    field(org, "deal", "budget", "number")
    field(org, "deal", "note", "text")
    make_workflow(org, trigger_type="deal_updated", trigger_config={"fields": ["custom.budget"], "crossing": True},
                  conditions={"combinator": "and", "rules": [{"field": "deal.custom.budget", "operator": "gt",
                                                             "value": 10000}]},
                  actions=[{"type": "create_task", "config": {"title": "Budget {{deal.custom.budget}}"}}])
    for custom in ({"note": "a"}, {"note": "a", "budget": 5000}, {"note": "a", "budget": 20000},
                   {"note": "b", "budget": 20000}, {"note": "b", "budget": 30000}):
        deal.custom = custom
        deal.save()
        drain()
    # Only the save that took the budget over 10,000: not the note's, not the next one above it.
    assert list(Task.objects.values_list("title", flat=True)) == ["Budget 20000"]


def test_the_api_defines_own_fields_for_admins_only_within_the_organization(org, owner, teammate, viewer, outsider):
    def client(user):
        made = APIClient()
        made.force_authenticate(user)
        return made

    url = "/api/v1/custom-fields/"
    created = client(owner).post(url, {"entity": "deal", "key": "tier", "label": "Tier", "kind": "choice",
                                       "choices": ["Gold", "Silver"]}, format="json")
    assert created.status_code == 201, created.content
    field_id = created.json()["id"]
    assert [f["key"] for f in client(viewer).get(url).json()["results"]] == ["tier"]  # members read them
    assert client(teammate).post(url, {"entity": "deal", "key": "x", "label": "X", "kind": "text"},
                                 format="json").status_code == 403  # ops members do not define them
    assert client(outsider).get(f"{url}{field_id}/").status_code == 404
    clash = client(owner).post(url, {"entity": "deal", "key": "title", "label": "T", "kind": "text"}, format="json")
    assert clash.status_code == 400 and "standard field" in str(clash.json())
    renamed = client(owner).patch(f"{url}{field_id}/", {"label": "Customer tier"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["label"] == "Customer tier"
    rekeyed = client(owner).patch(f"{url}{field_id}/", {"key": "level"}, format="json")
    assert rekeyed.status_code == 400 and "never changes" in str(rekeyed.json())
    make_workflow(org, name="Gold care", actions=[
        {"type": "create_task", "config": {"title": "Tier {{deal.custom.tier}}"}}])
    refused = client(owner).delete(f"{url}{field_id}/")
    assert refused.status_code == 409 and "Gold care" in str(refused.json())
    assert CustomField.objects.filter(pk=field_id).exists()


def test_the_fields_page_lets_admins_add_rename_and_delete_and_others_read(org, owner, teammate, viewer, deal):
    from django.test import Client

    def client(user):
        made = Client()
        made.force_login(user)
        return made

    admin = client(owner)
    added = admin.post("/crm/automation/fields/", {"entity": "deal", "label": "Tier", "key": "tier",
                                                   "kind": "choice", "choices": "Gold\nSilver\n"}, follow=True)
    assert "Added “Tier”: workflows read it as {{deal.custom.tier}}" in added.content.decode()
    tier = CustomField.objects.get(key="tier")
    assert tier.choices == ["Gold", "Silver"]
    clash = admin.post("/crm/automation/fields/", {"entity": "deal", "label": "T", "key": "title", "kind": "text"},
                       follow=True)
    assert "is a standard field of a deal" in clash.content.decode() and CustomField.objects.count() == 1
    admin.post(f"/crm/automation/fields/{tier.pk}/rename/", {"label": "Customer tier"})
    tier.refresh_from_db()
    assert (tier.label, tier.key) == ("Customer tier", "tier")
    make_workflow(org, name="Tier care", actions=[{"type": "create_task", "config": {"title": "{{deal.custom.tier}}"}}])
    page = client(viewer).get("/crm/automation/fields/").content.decode()
    assert "deal.custom.tier" in page and "Tier care" in page and "Add a field" not in page
    assert client(teammate).post("/crm/automation/fields/", {"entity": "deal", "label": "X", "key": "x",
                                                               "kind": "text"}).status_code == 403
    assert client(viewer).post(f"/crm/automation/fields/{tier.pk}/delete/").status_code == 403
    refused = admin.post(f"/crm/automation/fields/{tier.pk}/delete/", follow=True).content.decode()
    assert "used by the live workflow(s) Tier care" in refused and CustomField.objects.filter(pk=tier.pk).exists()


def test_simulate_the_impact_preview_and_why_not_know_own_fields(org, owner, contact):
    from crm_automation.automation.models import WorkflowDecision
    from crm_automation.automation.services import impact
    from crm_automation.automation.services.simulation import simulate
    from crm_automation.crm.models import Stage

    field(org, "deal", "budget", "number", label="Budget")
    big = {"combinator": "and", "rules": [{"field": "deal.custom.budget", "operator": "gt", "value": 10000}]}
    proposal = Stage.objects.get(organization=org, slug="proposal")
    deals = [Deal.objects.create(organization=org, title=f"D{budget}", stage=proposal, contact=contact,
                                 custom={"budget": budget}) for budget in (20000, 5000)]
    workflow = make_workflow(org, activate=False, conditions=big, actions=[
        {"type": "create_task", "config": {"title": "Budget {{deal.custom.budget}}"}}])
    # Simulate: the rendered title, nothing made.
    run = simulate(workflow_id=workflow.pk, by=owner, record=deals[0])
    (step,) = run.actions.all()
    assert step.result["would_create_task"]["title"] == "Budget 20000" and not Task.objects.exists()
    # The impact preview of past changes: one of the two would have entered.
    for deal in deals:
        deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()  # (nothing listened then: the workflow is a draft)
    result = impact.preview(Workflow.objects.get(pk=workflow.pk), days=30)
    assert result.entered == 1 and result.skipped["the conditions were false"] == 1, result.skipped
    # "Why not": the live workflow's decision on the small deal names the own field by its label.
    from crm_automation.automation.services.workflows import workflow_transition
    workflow_transition(workflow_id=workflow.pk, name="activate", by=None)
    small = Deal.objects.get(title="D5000")
    deal_move_to_stage(deal=small, stage=proposal)
    deal_move_to_stage(deal=small, stage=stage(org, "won"))
    drain()
    decision = WorkflowDecision.objects.filter(workflow=workflow, entity_id=small.pk).latest("id")
    assert decision.outcome != "matched" and "5000" in decision.reason, decision.reason


def test_the_record_page_edits_own_fields_by_kind_and_says_what_is_wrong_at_the_field(org, owner, teammate, viewer,
                                                                                     deal):
    from tests.test_web_builder import as_user
    CustomField.objects.create(organization=org, entity="deal", key="tier", label="Tier", kind="choice",
                               choices=["gold", "silver"])
    CustomField.objects.create(organization=org, entity="deal", key="budget", label="Budget", kind="money")
    url = f"/crm/automation/records/deal/{deal.pk}/fields/"
    page = as_user(teammate).get(f"/crm/automation/records/deal/{deal.pk}/").content.decode()
    assert 'name="custom.tier"' in page and 'name="custom.budget"' in page
    bad = as_user(teammate).post(url, {"custom.tier": "bronze", "custom.budget": "lots"})
    assert bad.status_code == 400
    text = bad.content.decode()
    assert "is not one of its choices" in text and "is not a number" in text and 'value="lots"' in text
    deal.refresh_from_db()
    assert deal.custom == {}
    assert as_user(viewer).post(url, {"custom.tier": "gold"}).status_code == 403
    saved = as_user(teammate).post(url, {"custom.tier": "Gold", "custom.budget": "1200.5"})
    assert saved.status_code == 302
    deal.refresh_from_db()
    assert deal.custom == {"tier": "gold", "budget": "1200.50"}
