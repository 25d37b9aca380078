"""The save path: one event per change, in the change's own transaction."""

import pytest
from django.db import transaction

from crm_automation.automation.models import AutomationEvent, WorkflowRun
from crm_automation.crm.models import Deal, Lead
from crm_automation.crm.services import deal_move_to_stage, lead_convert, leads_convert_bulk
from tests.conftest import drain, make_workflow, stage


def kinds():
    """The events of deals and leads (the contact fixture's contact_created aside)."""
    return list(AutomationEvent.objects.exclude(kind="contact_created").order_by("id").values_list("kind", flat=True))


def test_creating_a_deal_records_deal_created(org, deal):
    event = AutomationEvent.objects.get(kind="deal_created")
    assert (event.kind, event.entity_id, event.depth) == ("deal_created", deal.pk, 0)


def test_a_stage_change_records_from_and_to(org, deal):
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    event = AutomationEvent.objects.order_by("id").last()
    assert event.kind == "deal_stage_change"
    proposal, won = stage(org, "proposal").pk, stage(org, "won").pk
    assert event.payload == {"from_stage_id": proposal, "to_stage_id": won, "changed": {"stage": [proposal, won]},
                             "source": "system"}  # where it came from (crm/sources.py): here the shell


def test_a_plain_save_from_the_shell_fires_too(org, deal):
    deal = Deal.objects.get(pk=deal.pk)
    deal.stage = stage(org, "won")
    deal.save()
    assert kinds() == ["deal_created", "deal_stage_change"]


def test_saving_other_fields_records_an_update_and_saving_nothing_new_records_nothing(org, deal):
    deal = Deal.objects.get(pk=deal.pk)
    deal.title = "Renamed"
    deal.save()
    deal.save(update_fields=["title"])  # the same title again: no change
    deal.save()
    assert kinds() == ["deal_created", "deal_updated"]
    assert AutomationEvent.objects.get(kind="deal_updated").payload == {"changed": {"title": ["Website", "Renamed"]},
                                                                        "source": "system"}


def test_moving_to_the_same_stage_records_nothing(org, deal):
    deal_move_to_stage(deal=deal, stage=stage(org, "proposal"))
    assert kinds() == ["deal_created"]


def test_queryset_update_does_not_fire(org, deal):
    Deal.objects.filter(pk=deal.pk).update(stage=stage(org, "won"))
    assert kinds() == ["deal_created"]


def test_a_rolled_back_change_leaves_no_event_and_no_run(org, deal):
    make_workflow(org)
    with pytest.raises(RuntimeError), transaction.atomic():
        deal_move_to_stage(deal=deal, stage=stage(org, "won"))
        raise RuntimeError("the request failed after the save")
    assert kinds() == ["deal_created"]
    drain()
    assert not WorkflowRun.objects.exists()


def test_the_event_commits_with_the_change(org, deal, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    assert kinds()[-1] == "deal_stage_change"
    assert callbacks == []  # nudges are off in tests; no broker call either way


def test_lead_creation_and_conversion(org, lead):
    deal = lead_convert(lead=lead)
    assert kinds() == ["lead_created", "deal_created", "lead_converted"]
    lead.refresh_from_db()
    assert lead.converted_deal == deal and lead.converted_contact.email == "grace@example.com"
    assert lead.status == Lead.Status.CONVERTED


def test_converting_twice_is_refused(org, lead):
    lead_convert(lead=lead)
    with pytest.raises(Exception, match="already converted"):
        lead_convert(lead=lead)
    assert kinds().count("lead_converted") == 1


def test_bulk_conversion_records_one_event_per_record(org, owner):
    leads = Lead.objects.bulk_create([Lead(organization=org, name=f"Lead {i}", company=f"Co {i}")
                                      for i in range(5)])
    converted = leads_convert_bulk(organization_id=org.pk, lead_ids=[x.pk for x in leads])
    assert converted == 5
    assert kinds().count("lead_converted") == 5 and kinds().count("deal_created") == 5
    assert leads_convert_bulk(organization_id=org.pk, lead_ids=[x.pk for x in leads]) == 0


def test_the_save_path_adds_one_insert_whatever_the_number_of_workflows(org, deal):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for_a_move(to):
        with CaptureQueriesContext(connection) as captured:
            deal_move_to_stage(deal=deal, stage=stage(org, to))
        return [q["sql"] for q in captured.captured_queries]

    plain = queries_for_a_move("negotiation")
    for i in range(5):
        make_workflow(org, name=f"wf {i}")
    with_workflows = queries_for_a_move("won")
    assert len(with_workflows) == len(plain)
    # (on PostgreSQL the INSERT rides in the move's own statement: WITH moved AS (UPDATE …) INSERT …)
    inserts = [sql for sql in with_workflows if "INSERT INTO" in sql]
    assert len(inserts) == 1 and "automation_automationevent" in inserts[0]
    assert not any("automation_workflow" in sql for sql in with_workflows)
