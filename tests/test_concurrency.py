"""Transitions under concurrency: two admins activating at once cannot pass the plan's limit."""

import threading

import pytest
from django.db import connection

from crm_automation.automation.models import Workflow
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.refusals import Refused
from tests.conftest import make_workflow


@pytest.mark.django_db(transaction=True)
def test_concurrent_activations_never_exceed_the_plan_limit(org):
    for i in range(9):
        make_workflow(org, name=f"wf {i}")
    contenders = [make_workflow(org, name=f"contender {i}", activate=False) for i in range(4)]
    start = threading.Barrier(len(contenders))
    outcomes = []

    def activate(workflow_id):
        start.wait()
        try:
            workflow_transition(workflow_id=workflow_id, name="activate", by=None)
            outcomes.append("activated")
        except Refused as exc:
            outcomes.append(exc.message)
        finally:
            connection.close()

    threads = [threading.Thread(target=activate, args=(wf.pk,)) for wf in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("activated") == 1, outcomes
    assert all("allows 10 activated workflows" in o for o in outcomes if o != "activated")
    assert Workflow.objects.filter(organization=org, status="activated").count() == 10
