"""A workflow's pages beside the builder: YAML (saved through the services, errors by line, the
lines numbered), versions (compared in words, rolled back), publish (the diff, then live),
simulate (previews, nothing sent or changed) and the flow as an SVG picture — for every role,
and 404 for other organizations."""

import re

import pytest
from django.test import Client

from crm_automation.automation.models import Workflow, WorkflowRun
from crm_automation.automation.services.versions import workflow_export_yaml
from crm_automation.automation.services.workflows import workflow_update
from crm_automation.crm.models import Deal, EmailMessage, Lead, Task
from crm_automation.web import graph_picture
from tests.conftest import make_workflow
from tests.drafts import draft_actions

PAGES = ["yaml", "versions", "publish", "simulate", "graph"]


def page_of(workflow, name: str) -> str:
    return f"/crm/automation/workflows/{workflow.pk}/{name}/"


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text_of(response) -> str:
    return response.content.decode()


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the YAML text that holds `needle`."""
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def titles_of(workflow) -> list[str]:
    return [a.config.get("title") for a in draft_actions(workflow) if a.action_type == "create_task"]


@pytest.fixture
def draft(org):
    return make_workflow(org, name="Won deal kickoff", activate=False)


@pytest.fixture
def live(org):
    return make_workflow(org, name="Live kickoff")


# --- Every page, every role ---------------------------------------------------------------------
@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize("who", ["owner", "teammate", "viewer"])
def test_every_page_opens_for_every_member_of_the_organization(request, draft, name, who):
    response = as_user(request.getfixturevalue(who)).get(page_of(draft, name))
    assert response.status_code == 200
    assert "Won deal kickoff" in text_of(response)


@pytest.mark.parametrize("name", PAGES)
def test_every_page_is_not_found_for_another_organization(draft, outsider, name):
    assert as_user(outsider).get(page_of(draft, name)).status_code == 404


@pytest.mark.parametrize(("name", "data"), [("yaml", {"yaml": "id: x"}), ("rollback", {"version": "1"}),
                                            ("publish", {}), ("simulate", {})])
def test_every_form_is_not_found_for_another_organization_and_changes_nothing(draft, outsider, name, data):
    assert as_user(outsider).post(page_of(draft, name), data).status_code == 404
    assert Workflow.objects.get(pk=draft.pk).version == 1 and not WorkflowRun.objects.exists()


def test_the_pages_need_a_login(draft):
    response = Client().get(page_of(draft, "yaml"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_tab_bar_names_the_workflow_its_status_and_links_every_page(draft, owner):
    text = text_of(as_user(owner).get(page_of(draft, "graph")))
    assert re.search(r"<h1>Won deal kickoff <span class=\"badge draft\">Draft</span></h1>", text)
    assert f'href="/crm/automation/workflows/{draft.pk}/edit/"' in text  # the builder
    for name in PAGES:
        assert f'href="{page_of(draft, name)}"' in text
    assert f'href="{page_of(draft, "graph")}" aria-current="page"' in text


# --- YAML ---------------------------------------------------------------------------------------
def test_the_yaml_page_shows_the_export_in_a_labelled_textarea_with_numbered_lines(draft, owner):
    text = text_of(as_user(owner).get(page_of(draft, "yaml")))
    assert '<label for="yaml-text">' in text and 'id="yaml-text" name="yaml"' in text
    assert "name: Won deal kickoff" in text and "toolName: crm/create_task" in text
    lines = len(workflow_export_yaml(draft).splitlines())
    assert f"<span>{lines}</span>" in text and f"<span>{lines + 1}</span>" not in text


def test_saving_yaml_changes_the_draft_and_makes_a_new_version(draft, teammate):
    changed = workflow_export_yaml(draft).replace("Kick off {{deal.title}}", "Start {{deal.title}}")
    response = as_user(teammate).post(page_of(draft, "yaml"), {"yaml": changed, "revision": "0"}, follow=True)
    assert response.redirect_chain[-1][0] == page_of(draft, "yaml")
    assert "Saved as version 2." in text_of(response)
    assert titles_of(draft) == ["Start {{deal.title}}"] and Workflow.objects.get(pk=draft.pk).version == 2


def test_saving_the_yaml_unchanged_says_there_was_nothing_to_save(draft, owner):
    response = as_user(owner).post(page_of(draft, "yaml"), {"yaml": workflow_export_yaml(draft)}, follow=True)
    assert "Nothing to save" in text_of(response) and Workflow.objects.get(pk=draft.pk).version == 1


def test_a_yaml_mistake_shows_its_line_keeps_the_text_and_saves_nothing(draft, owner):
    broken = workflow_export_yaml(draft).replace("{{deal.contact.email}}", "{{deal.nobody}}").replace(
        "Kick off {{deal.title}}", "Edited {{deal.title}}")
    line = line_of(broken, "{{deal.nobody}}")
    response = as_user(owner).post(page_of(draft, "yaml"), {"yaml": broken})
    assert response.status_code == 400
    text = text_of(response)
    assert f"Line {line}: nodes[send-email].data.config.defaults.to: " in text
    assert "Edited {{deal.title}}" in text  # what the person typed is still there
    assert f'<span class="wrong" title="A problem on this line">{line}</span>' in text
    assert text.count('class="wrong"') == 1 and 'aria-invalid="true"' in text
    assert titles_of(draft) == ["Kick off {{deal.title}}"] and Workflow.objects.get(pk=draft.pk).version == 1


def test_a_yaml_syntax_error_shows_its_line(draft, owner):
    lines = workflow_export_yaml(draft).splitlines()
    lines.insert(4, "  broken: [not closed")
    response = as_user(owner).post(page_of(draft, "yaml"), {"yaml": "\n".join(lines)})
    assert response.status_code == 400
    assert re.search(r"Line (5|6): this is not valid YAML", text_of(response))
    assert Workflow.objects.get(pk=draft.pk).version == 1


def test_a_viewer_reads_the_yaml_but_cannot_save_it(draft, viewer):
    client = as_user(viewer)
    text = text_of(client.get(page_of(draft, "yaml")))
    assert " readonly>" in text and ">Save</button>" not in text
    changed = workflow_export_yaml(draft).replace("Kick off", "Start")
    assert client.post(page_of(draft, "yaml"), {"yaml": changed}).status_code == 403
    assert titles_of(draft) == ["Kick off {{deal.title}}"]


def test_ops_members_edit_drafts_but_not_a_live_workflow(live, teammate):
    changed = workflow_export_yaml(live).replace("Kick off", "Start")
    response = as_user(teammate).post(page_of(live, "yaml"), {"yaml": changed})
    assert response.status_code == 403 and "only admins change a live workflow" in text_of(response)
    assert titles_of(live) == ["Kick off {{deal.title}}"]


def test_an_admin_saves_a_live_workflow_as_edits_to_publish(live, owner):
    changed = workflow_export_yaml(live).replace("Kick off", "Start")
    response = as_user(owner).post(page_of(live, "yaml"), {"yaml": changed}, follow=True)
    assert "Version 1 still runs: publish to make these edits live." in text_of(response)
    assert titles_of(live) == ["Start {{deal.title}}"] and Workflow.objects.get(pk=live.pk).version == 1


def test_a_stale_yaml_form_does_not_overwrite_newer_edits(draft, owner):
    stale = workflow_export_yaml(draft).replace("Kick off", "Stale")
    workflow_update(workflow_id=draft.pk, by=owner, actions=[
        {"type": "create_task", "config": {"title": "Newer"}}])
    response = as_user(owner).post(page_of(draft, "yaml"), {"yaml": stale, "revision": "0"})
    assert response.status_code == 400 and "saved this workflow while you were editing it" in text_of(response)
    assert titles_of(draft) == ["Newer"]


# --- Versions and rollback ----------------------------------------------------------------------
def second_version(workflow, by) -> None:
    """Version 2: the task's title changes and the email step goes."""
    workflow_update(workflow_id=workflow.pk, by=by, actions=[
        {"id": "create-task", "type": "create_task", "config": {"title": "Call {{deal.title}}", "assignee": "owner"}},
        {"id": "update-field", "type": "update_field", "config": {"field": "probability", "value": 100}}])


def test_the_versions_page_lists_each_version_with_when_and_who(draft, owner):
    second_version(draft, owner)
    text = text_of(as_user(owner).get(page_of(draft, "versions")))
    assert "Version 2" in text and "Version 1" in text
    assert "Olive" in text  # version 2 was saved by the owner; version 1 by the system
    assert "the system" in text
    assert re.search(r"\d{1,2} \w{3} \d{4}, \d\d:\d\d:\d\d", text)  # times with seconds


def test_two_versions_compare_in_words(draft, owner):
    second_version(draft, owner)
    response = as_user(owner).get(page_of(draft, "versions"), {"from": "1", "to": "2"})
    text = text_of(response)
    assert "Changed “Create task” (Create task)" in text
    assert "title: “Kick off {{deal.title}}” → “Call {{deal.title}}”" in text
    assert "Removed “Send email” (Send email)" in text
    assert "No longer goes from “Update probability” → “Send email”" in text
    assert "{&#x27;" not in text and "{'" not in text  # no Python reprs


def test_a_trigger_change_is_said_with_the_stage_names(draft, owner):
    workflow_update(workflow_id=draft.pk, by=owner, changes={"trigger_config": {"to_stage": "lost"}})
    text = text_of(as_user(owner).get(page_of(draft, "versions")))
    assert "Changed the trigger" in text and "to stage: Won → Lost" in text


def test_the_comparison_defaults_to_the_latest_change_and_says_when_a_version_is_missing(draft, owner):
    second_version(draft, owner)
    client = as_user(owner)
    assert "From version 1 to version 2" in text_of(client.get(page_of(draft, "versions")))
    response = client.get(page_of(draft, "versions"), {"from": "9", "to": "2"})
    assert response.status_code == 400 and "This workflow has no version 9." in text_of(response)


def test_rolling_back_makes_a_new_version_with_the_old_steps(draft, owner):
    second_version(draft, owner)
    client = as_user(owner)
    page = text_of(client.get(page_of(draft, "versions")))
    assert "Roll back to version 1…" in page and "No version is deleted" in page
    response = client.post(page_of(draft, "rollback"), {"version": "1"}, follow=True)
    assert "Rolled back: version 3 has the steps and settings of version 1" in text_of(response)
    workflow = Workflow.objects.get(pk=draft.pk)
    assert workflow.version == 3 and titles_of(workflow) == ["Kick off {{deal.title}}"]
    assert workflow.versions.count() == 3


def test_viewers_cannot_roll_back_and_ops_cannot_roll_back_a_live_workflow(draft, live, viewer, teammate, owner):
    second_version(draft, owner)
    assert "Roll back to" not in text_of(as_user(viewer).get(page_of(draft, "versions")))
    assert as_user(viewer).post(page_of(draft, "rollback"), {"version": "1"}).status_code == 403
    assert as_user(teammate).post(page_of(live, "rollback"), {"version": "1"}).status_code == 403
    assert Workflow.objects.get(pk=draft.pk).version == 2


def test_rolling_back_to_a_version_that_does_not_exist_says_so(draft, owner):
    response = as_user(owner).post(page_of(draft, "rollback"), {"version": "7"}, follow=True)
    assert "This workflow has no version 7." in text_of(response)


# --- Publish ------------------------------------------------------------------------------------
def test_publish_shows_the_edits_then_makes_them_live(live, owner):
    second_version(live, owner)
    client = as_user(owner)
    text = text_of(client.get(page_of(live, "publish")))
    assert "Version 1 is live" in text and "Publish version 2" in text
    assert "title: “Kick off {{deal.title}}” → “Call {{deal.title}}”" in text
    response = client.post(page_of(live, "publish"), follow=True)
    assert "Published: version 2" in text_of(response)
    workflow = Workflow.objects.get(pk=live.pk)
    assert workflow.current_version.number == 2 and workflow.version == 2
    assert "Nothing to publish" in text_of(client.get(page_of(live, "publish")))


def test_only_admins_publish(live, owner, teammate, viewer):
    second_version(live, owner)
    assert "Only admins of Acme publish workflows" in text_of(as_user(teammate).get(page_of(live, "publish")))
    for who in (teammate, viewer):
        assert as_user(who).post(page_of(live, "publish")).status_code == 403
    assert Workflow.objects.get(pk=live.pk).current_version.number == 1


def test_a_draft_explains_that_activating_makes_it_live_and_offers_to(draft, owner):
    text = text_of(as_user(owner).get(page_of(draft, "publish")))
    assert "activating the draft makes its latest version live" in text
    assert f'action="/crm/automation/workflows/{draft.pk}/toggle/"' in text
    response = as_user(owner).post(f"/crm/automation/workflows/{draft.pk}/toggle/",
                                   {"next": page_of(draft, "publish")}, follow=True)
    assert response.redirect_chain[-1][0] == page_of(draft, "publish")
    assert Workflow.objects.get(pk=draft.pk).status == "activated"


# --- Simulate -----------------------------------------------------------------------------------
def test_simulate_offers_the_organizations_deals_and_preselects_the_one_asked_for(draft, deal, owner, outsider):
    Deal.objects.create(organization=outsider.memberships.get().organization, title="Rival deal",
                        stage=deal.stage.__class__.objects.filter(organization__slug="rival").first())
    text = text_of(as_user(owner).get(page_of(draft, "simulate"), {"record": str(deal.pk)}))
    assert '<label for="record">Deal' in text and '<label for="version">Version' in text
    assert f'<option value="{deal.pk}" selected>Website (Proposal)</option>' in text
    assert "Rival deal" not in text


def test_simulating_on_a_deal_shows_what_each_step_would_do_and_changes_nothing(draft, deal, teammate):
    response = as_user(teammate).post(page_of(draft, "simulate"), {"record": str(deal.pk)})
    assert response.status_code == 200
    text = text_of(response)
    assert "Nothing was sent and nothing changed." in text
    assert "would create task “Kick off Website”" in text and "<dd>Kick off Website</dd>" in text
    assert "would change probability: 10 → 100" in text
    assert "would email ada@example.com: “Welcome Website”" in text and "<dd class=\"body\">Hi Ada</dd>" in text
    steps = re.findall(r"<strong>([^<]+)</strong>", text.split('class="step-list preview"', 1)[1])
    assert steps == ["Create task", "Update probability", "Send email"]  # in order
    assert not Task.objects.exists() and not EmailMessage.objects.exists()
    assert Deal.objects.get(pk=deal.pk).probability == 10
    assert WorkflowRun.objects.get().simulated  # the one thing kept: the simulated run


def test_simulate_refuses_a_record_of_another_organization_and_viewers(draft, owner, viewer, outsider, deal):
    rival = outsider.memberships.get().organization
    foreign = Deal.objects.create(organization=rival, title="Rival deal", stage=rival.stages.first())
    assert as_user(owner).post(page_of(draft, "simulate"), {"record": str(foreign.pk)}).status_code == 404
    assert as_user(owner).post(page_of(draft, "simulate"), {"record": "not-an-id"}).status_code == 404
    assert as_user(viewer).post(page_of(draft, "simulate"), {"record": str(deal.pk)}).status_code == 403
    assert not WorkflowRun.objects.exists()


def test_simulate_without_a_record_asks_for_one(draft, owner, deal):
    response = as_user(owner).post(page_of(draft, "simulate"), {"record": ""})
    assert response.status_code == 400 and "Choose the deal to simulate" in text_of(response)


def test_a_lead_workflow_is_simulated_on_leads(org, owner, lead, deal):
    call = {"type": "create_task", "config": {"title": "Call {{lead.name}}"}}
    workflow = make_workflow(org, name="Lead welcome", trigger_type="lead_created", trigger_config={},
                             activate=False, actions=[call])
    client = as_user(owner)
    text = text_of(client.get(page_of(workflow, "simulate")))
    assert "Grace Hopper (grace@example.com)" in text and "Website" not in text
    text = text_of(client.post(page_of(workflow, "simulate"), {"record": str(lead.pk)}))
    assert "would create task “Call Grace Hopper”" in text and not Task.objects.exists()
    assert Lead.objects.get(pk=lead.pk).name == "Grace Hopper"


# --- Graph --------------------------------------------------------------------------------------
BRANCHES = [
    {"id": "big", "type": "condition", "config": {"rules": [{"field": "deal.amount", "operator": "gt", "value": 1}]}},
    {"id": "each", "type": "loop", "config": {"loopMode": "count", "count": 2}},
    {"id": "step", "type": "create_task", "label": "Call them", "config": {"title": "Call"}},
    {"id": "small", "type": "create_task", "label": "Small one", "config": {"title": "Small"}},
    {"id": "after", "type": "create_task", "label": "Afterwards", "config": {"title": "After"}},
]
EDGES = [{"source": "trigger", "target": "big"},
         {"source": "big", "target": "each", "sourceHandle": "condition-true"},
         {"source": "big", "target": "small", "sourceHandle": "condition-false"},
         {"source": "each", "target": "step", "sourceHandle": "loop-body"},
         {"source": "step", "target": "each"},
         {"source": "each", "target": "after", "sourceHandle": "loop-done"}]


def test_the_graph_is_an_svg_picture_with_labels_ways_out_and_a_dashed_loop_back(org, owner):
    workflow = make_workflow(org, name="Branches", actions=BRANCHES, graph={"edges": EDGES}, activate=False)
    text = text_of(as_user(owner).get(page_of(workflow, "graph")))
    picture = text.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert 'role="img" aria-label="Flow of the workflow: “Deal moves to Won”, then 5 steps"' in picture
    assert "<title>Flow of the workflow" in picture
    for words in ("Deal moves to Won", "Continue only if", "Call them", "Small one", "Afterwards", ">yes<",
                  ">no<", ">each item<", ">when done<"):
        assert words in picture
    assert picture.count('class="edge back"') == 1 and 'stroke-dasharray' in picture
    assert "“Loop” (next round of the loop)" in text  # the same flow in words, the way back too


def test_the_graph_puts_each_node_a_row_below_the_nodes_leading_to_it():
    definition = {"trigger_type": "deal_created", "trigger_config": {}, "actions": BRANCHES, "graph": {"edges": EDGES}}
    picture = graph_picture.svg(definition, {})
    tops = {label: int(y) for y, label in re.findall(r'<rect x="\d+" y="(\d+)"[^>]*/><text[^>]*>([^<]+)</text>',
                                                      picture)}
    assert tops["Deal is created"] < tops["Continue only if"] < tops["Loop"] < tops["Call them"]
    assert tops["Loop"] == tops["Small one"] and tops["Call them"] == tops["Afterwards"]


def test_the_graph_escapes_labels_people_typed():
    hostile = "<script>alert(1)</script>"
    definition = {"trigger_type": "deal_created", "trigger_config": {}, "graph": {
        "trigger": {"id": "trigger", "label": '"><svg onload=alert(2)>'}},
        "actions": [{"id": "a", "type": "create_task", "label": hostile, "config": {"title": "x"}}]}
    picture = graph_picture.svg(definition, {})
    assert "<script>" not in picture and "&lt;script&gt;alert(1)&lt;/script&gt;" in picture
    assert "<svg onload" not in picture and "&quot;&gt;&lt;svg onload=alert(2)&gt;" in picture


def test_the_graph_page_escapes_a_hostile_label(org, owner):
    workflow = make_workflow(org, name="Hostile", activate=False, actions=[
        {"type": "create_task", "label": "<script>alert(1)</script>", "config": {"title": "x"}}])
    text = text_of(as_user(owner).get(page_of(workflow, "graph")))
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_the_graph_shows_an_older_version_when_asked(draft, owner):
    second_version(draft, owner)
    client = as_user(owner)
    assert "Send email" not in client.get(page_of(draft, "graph")).content.decode().split("<svg", 1)[1]
    assert "Send email" in text_of(client.get(page_of(draft, "graph"), {"version": "1"})).split("<svg", 1)[1]
    assert client.get(page_of(draft, "graph"), {"version": "9"}).status_code == 404
