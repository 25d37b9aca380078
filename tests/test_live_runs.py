"""Runs you can watch, on the server's side: the run's page draws the version's graph with the
run's path (web/run_picture.py), and pages that show runs in progress carry a watch whose probe
(web/live.py) costs one query, reads no session, names nothing of another organization, and says
when everything watched is over."""

import json
import re

import pytest
from django.core import signing
from django.test import Client

from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.crm.services import deal_move_to_stage
from crm_automation.web.live import APPROVALS, RUNS, Watch
from tests.conftest import drain, make_workflow, stage, time_passes

PROBE = "/crm/automation/live/"
BRANCHY = [
    {"id": "wait", "type": "wait", "label": "Give it a day", "config": {"delayAmount": 1, "delayUnit": "days"}},
    {"id": "big", "type": "condition", "label": "Big deal",
     "config": {"combinator": "and", "rules": [{"field": "deal.amount", "operator": "gt", "value": 1_000_000}]}},
    {"id": "call", "type": "create_task", "label": "Call them", "config": {"title": "Call about {{deal.title}}"}},
    {"id": "thank", "type": "create_task", "label": "Thank them",
     "config": {"title": "Thank {{deal.contact.first_name}}"}},
]
EDGES = [{"source": "trigger", "target": "wait"}, {"source": "wait", "target": "big"},
         {"source": "big", "target": "call", "sourceHandle": "condition-true"},
         {"source": "big", "target": "thank", "sourceHandle": "condition-false"}]


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def waiting_run(org, deal):
    make_workflow(org, actions=BRANCHY, graph={"edges": EDGES})
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get()
    assert run.status == "waiting"
    return run


def found(pattern: str, html: str) -> str:
    match = re.search(pattern, html, re.S)
    assert match is not None, f"{pattern} is not in the page"
    return match.group(1)


def page_watch(html: str) -> tuple[str, str]:
    return found(r'data-live-token="([^"]+)"', html), found(r'data-live-marker="([^"]+)"', html)


def elsewhere(change) -> None:
    """`change` made and committed on a connection of its own (another process's, as the
    worker's would be), while the caller's page is still being drawn."""
    import threading

    from django.db import connection

    def made() -> None:
        change()
        connection.close()

    thread = threading.Thread(target=made)
    thread.start()
    thread.join()


def picture_of(html: str) -> dict:
    return json.loads(found(r'<script id="run-graph-data" type="application/json">(.*?)</script>', html))


def test_the_run_page_draws_the_path_and_follows_the_run_with_one_query_a_second(
        waiting_run, owner, django_assert_num_queries):
    client = as_user(owner)
    html = client.get(f"/crm/automation/runs/{waiting_run.pk}/").content.decode()
    picture = picture_of(html)
    status = {node["id"]: node["status"] for node in picture["nodes"]}
    assert status == {"trigger": "completed", "wait": "waiting", "big": "pending", "call": "pending",
                      "thank": "pending"}
    assert "Waiting" in next(n["statusWords"] for n in picture["nodes"] if n["id"] == "wait")
    token, marker = page_watch(html)

    anonymous = Client()  # the token is the probe's credential: no session is read
    with django_assert_num_queries(1):
        answer = anonymous.get(PROBE, {"t": token}).json()
    assert answer == {"marker": marker, "over": False, "runs": {str(waiting_run.pk): {
        "status": "waiting", "label": "Waiting", "marker": answer["runs"][str(waiting_run.pk)]["marker"]}}}

    time_passes()
    sweep(fan_out=False)
    waiting_run.refresh_from_db()
    assert waiting_run.status == "completed"
    answer = anonymous.get(PROBE, {"t": token}).json()
    assert answer["marker"] != marker and answer["over"] is True

    html = client.get(f"/crm/automation/runs/{waiting_run.pk}/").content.decode()
    assert "data-live-token" not in html  # over: the page carries no watch any more
    picture = picture_of(html)
    status = {node["id"]: node["status"] for node in picture["nodes"]}
    # 100 is not over a million: the condition's "no" side ran; "yes" was not on the path.
    assert status == {"trigger": "completed", "wait": "completed", "big": "completed", "call": "off-path",
                      "thank": "completed"}
    edges = {(e["source"], e["target"]): e["status"] for e in picture["edges"]}
    assert edges == {("trigger", "wait"): "taken", ("wait", "big"): "taken", ("big", "call"): "off-path",
                     ("big", "thank"): "taken"}
    thank = next(n for n in picture["nodes"] if n["id"] == "thank")
    (step,) = thank["steps"]
    # What it was given (its templated settings as they read for this run) beside what it gave.
    assert step["input"]["settings"] == {"title": f"Thank {waiting_run_contact_name(waiting_run)}"}
    assert step["output"]["title"] == step["input"]["settings"]["title"]
    assert picture["payload"]["to_stage"] == "won" and picture["version"] == 1


def waiting_run_contact_name(run) -> str:
    from crm_automation.crm.models import Deal
    contact = Deal.objects.get(pk=run.trigger_entity_id).contact
    assert contact is not None
    return contact.first_name


def test_a_bad_or_foreign_token_learns_nothing(waiting_run, org, other_org):
    client = Client()
    assert client.get(PROBE, {"t": "nonsense"}).status_code == 403
    assert client.get(PROBE).status_code == 403
    good = Watch(org.pk, RUNS, (waiting_run.pk,)).token()
    assert client.get(PROBE, {"t": good[:-2] + "xx"}).status_code == 403  # tampered
    # A token signed for another organization names this run's id in vain: nothing of it is read.
    foreign = Watch(other_org.pk, RUNS, (waiting_run.pk,)).token()
    empty = Watch(other_org.pk, RUNS, ()).state()[0]
    assert client.get(PROBE, {"t": foreign}).json()["marker"] == empty
    # Tokens expire.
    stale = signing.dumps({"o": org.pk, "k": RUNS, "r": [waiting_run.pk]}, salt="crm_automation.web.live")
    assert client.get(PROBE, {"t": stale}).status_code == 200
    import time
    from unittest import mock
    with mock.patch.object(signing, "time", mock.Mock(time=lambda: time.time() + 13 * 3600)):
        assert client.get(PROBE, {"t": stale}).status_code == 403


def test_pages_with_runs_in_progress_carry_a_watch_and_over_runs_none(waiting_run, owner, deal):
    client = as_user(owner)
    for url in ("/crm/automation/", "/crm/automation/runs/", f"/crm/automation/records/deal/{deal.pk}/"):
        token, _ = page_watch(client.get(url).content.decode())
        assert Watch.read(token) == Watch(waiting_run.organization_id, RUNS, (waiting_run.pk,)), url
    token, _ = page_watch(client.get("/crm/automation/approvals/").content.decode())
    assert Watch.read(token).kind == APPROVALS
    WorkflowRun.objects.filter(pk=waiting_run.pk).update(status="completed")
    assert "data-live-token" not in client.get(f"/crm/automation/records/deal/{deal.pk}/").content.decode()


@pytest.mark.django_db(transaction=True)  # the worker's change commits on a connection of its own
@pytest.mark.parametrize("url", ["/crm/automation/runs/{run}/", "/crm/automation/", "/crm/automation/runs/",
                                 "/crm/automation/records/deal/{deal}/"])
def test_a_run_that_ends_while_its_page_is_drawn_is_the_next_probes_change(url, waiting_run, owner, deal,
                                                                            monkeypatch):
    """The worker finishes the run after the page read the run but before it read its marker:
    the page shows the run waiting, so its marker must be that of the run waiting, or the probe
    answers "no change, all over" and the open page shows a waiting run for good."""
    read_marker = Watch.probe

    def worker_finishes_the_run_meanwhile(watch):
        elsewhere(lambda: WorkflowRun.objects.filter(pk=waiting_run.pk).update(status="completed"))
        return read_marker(watch)

    monkeypatch.setattr(Watch, "probe", worker_finishes_the_run_meanwhile)
    html = as_user(owner).get(url.format(run=waiting_run.pk, deal=deal.pk)).content.decode()
    monkeypatch.setattr(Watch, "probe", read_marker)
    assert WorkflowRun.objects.get().status == "completed"  # the worker's change is in
    token, marker = page_watch(html)
    answer = Client().get(PROBE, {"t": token}).json()
    assert answer["over"] is True
    assert answer["marker"] != marker, "the page would never show the run's end"


@pytest.mark.django_db(transaction=True)
def test_a_question_answered_while_the_inbox_is_drawn_is_the_next_probes_change(org, deal, owner, monkeypatch):
    from crm_automation.automation.services.runs import run_answer
    from crm_automation.web.views import approvals as inbox
    from tests.test_approvals import SIDES
    from tests.test_graph_engine import win

    run = win(org, deal, *SIDES)
    name_records = inbox.selectors.name_records

    def answered_meanwhile(runs):  # after the inbox read its questions
        elsewhere(lambda: run_answer(run_id=run.pk, by=owner, node_id="ask", decision="approved"))
        return name_records(runs)

    monkeypatch.setattr(inbox.selectors, "name_records", answered_meanwhile)
    html = as_user(owner).get("/crm/automation/approvals/").content.decode()
    monkeypatch.setattr(inbox.selectors, "name_records", name_records)
    assert "Approve the terms of Website?" in html  # the page shows the question still open
    token, marker = page_watch(html)
    assert Client().get(PROBE, {"t": token}).json()["marker"] != marker, "the answer would not show"
