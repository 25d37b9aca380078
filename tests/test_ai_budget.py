"""An organization's monthly AI budget (tokens): once this month's AI calls reach it, an AI step
fails (or pauses, by its error policy) with the reason and no model call; last month's use does
not count; one aggregate query per step; the Health tab shows the use against the budget; an
admin sets it (the API, the admin), a viewer and another organization cannot."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm_automation.automation.ai import budget
from crm_automation.automation.models import AiCall
from crm_automation.crm.models import Organization, Task
from tests.conftest import make_workflow
from tests.fake_ai import chat
from tests.test_ai_nodes import agent, routed_flow
from tests.test_api_workflows import api
from tests.test_graph_engine import edge, task, win


def used(org, tokens: int, *, days_ago: int = 0) -> AiCall:
    call = AiCall.objects.create(organization=org, automation_key=f"earlier:{AiCall.objects.count()}",
                                 node_type="agent", request={}, status="succeeded", input_tokens=tokens - tokens // 4,
                                 output_tokens=tokens // 4)
    if days_ago:
        AiCall.objects.filter(pk=call.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    return call


def with_budget(org, tokens: int | None) -> None:
    Organization.objects.filter(pk=org.pk).update(ai_monthly_token_budget=tokens)


def reason(spent: int, of: int) -> str:
    since, renews = budget._month(timezone.localdate())
    return (f"the organization's monthly AI budget of {of:,} tokens is spent ({spent:,} used since "
            f"{since:%-d %B}); raise it or wait until {renews:%-d %B}; nothing was asked")


def test_a_spent_budget_fails_the_agent_step_with_the_reason_and_asks_nothing(org, deal, openai):
    with_budget(org, 200_000)
    used(org, 200_000)
    run = win(org, deal, [agent(), task("after", "{{Draft SMS}}")], [edge("trigger", "draft"),
                                                                    edge("draft", "after")])
    step = run.actions.get(node_id="draft")
    assert run.status == "failed" and step.status == "failed"
    assert step.error == reason(200_000, 200_000)
    assert "200,000 tokens is spent" in step.error and "raise it or wait until 1 " in step.error
    assert not openai.requests and AiCall.objects.count() == 1 and not Task.objects.exists()


def test_a_router_is_stopped_too_and_a_pause_policy_pauses(org, deal, openai):
    with_budget(org, 1000)
    used(org, 1500)
    actions, edges = routed_flow()
    actions[0] = {**actions[0], "on_error": {"policy": "pause"}}
    run = win(org, deal, actions, edges)
    assert run.status == "paused" and reason(1500, 1000) in run.error
    assert not openai.requests


def test_under_the_budget_and_last_months_use_does_not_count(org, deal, openai):
    with_budget(org, 10_000)
    used(org, 9_000)
    used(org, 1_000_000, days_ago=40)
    openai.reply(200, chat("Hello"))
    run = win(org, deal, [agent()], [edge("trigger", "draft")])
    assert run.status == "completed", run.error
    assert budget.use(org.pk, 10_000).tokens == 9_150  # and this answer's 120 + 30 tokens
    assert budget.refusal(org.pk) is None


def test_without_a_budget_nothing_is_summed_and_with_one_a_single_aggregate(org):
    with CaptureQueriesContext(connection) as none:
        assert budget.refusal(org.pk) is None
    assert not any("SUM(" in q["sql"].upper() for q in none.captured_queries)
    with_budget(org, 10)
    used(org, 50)
    with CaptureQueriesContext(connection) as one:
        assert budget.refusal(org.pk) == reason(50, 10)
    assert sum("SUM(" in q["sql"].upper() for q in one.captured_queries) == 1 and len(one.captured_queries) == 2


def test_the_health_tab_shows_this_months_use_against_the_budget(client, org, viewer):
    workflow = make_workflow(org, activate=False)
    used(org, 50_000)
    client.force_login(viewer)
    page = client.get(f"/crm/automation/workflows/{workflow.pk}/health/").content.decode()
    assert "50,000 tokens (no monthly budget)" in page
    with_budget(org, 200_000)
    page = client.get(f"/crm/automation/workflows/{workflow.pk}/health/").content.decode()
    assert "50,000 tokens of a budget of 200,000 (25 %)" in page
    used(org, 150_000)
    page = client.get(f"/crm/automation/workflows/{workflow.pk}/health/").content.decode()
    assert "200,000 tokens of a budget of 200,000: <strong>spent</strong>" in page


def test_an_admin_sets_the_budget_through_the_api(org, owner, viewer, outsider, other_org):
    used(org, 700)
    assert api(viewer).get("/api/v1/ai-budget/").json() | {"since": None, "renews": None} == {
        "budget_tokens": None, "used_tokens": 700, "since": None, "renews": None, "spent": False}
    refused = api(viewer).put("/api/v1/ai-budget/", {"budget_tokens": 500}, format="json")
    assert refused.status_code == 403
    bad = api(owner).put("/api/v1/ai-budget/", {"budget_tokens": "lots"}, format="json")
    assert bad.status_code == 400 and "budget_tokens" in bad.json()
    assert api(owner).put("/api/v1/ai-budget/", {}, format="json").status_code == 400
    assert Organization.objects.get(pk=org.pk).ai_monthly_token_budget is None
    body = api(owner).put("/api/v1/ai-budget/", {"budget_tokens": 500}, format="json").json()
    assert body["budget_tokens"] == 500 and body["spent"] is True
    # Another organization's admin sets their own organization's budget, never this one's.
    assert api(outsider).put("/api/v1/ai-budget/", {"budget_tokens": 9}, format="json").json()["used_tokens"] == 0
    assert Organization.objects.get(pk=org.pk).ai_monthly_token_budget == 500
    assert Organization.objects.get(pk=other_org.pk).ai_monthly_token_budget == 9
    cleared = api(owner).put("/api/v1/ai-budget/", {"budget_tokens": None}, format="json").json()
    assert cleared["budget_tokens"] is None and cleared["spent"] is False


@pytest.mark.parametrize("value", [-1, 1.5, True, 10**13])
def test_a_budget_that_is_not_a_whole_number_of_tokens_is_refused(org, owner, value):
    answer = api(owner).put("/api/v1/ai-budget/", {"budget_tokens": value}, format="json")
    assert answer.status_code == 400 and "whole number of tokens" in str(answer.json()["budget_tokens"])
    assert Organization.objects.get(pk=org.pk).ai_monthly_token_budget is None
