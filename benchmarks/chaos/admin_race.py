"""Scenario 7: Django-admin writes racing a drain, and concurrent activations against the Pro limit.

While a cluster drains the workflow's runs, two browsers (django.test.Client in threads of the
harness process, logged in as the org admin, posting the forms exactly as rendered, hidden
`initial-*` fields included) keep working on the same workflow: one saves a new description
again and again, the other presses Pause / Activate. Afterwards the workflow's counters must
equal its finished runs (no increment lost to a stale save), every transition must still be in
force until the next one (none silently undone), and the last saved description must be there.

Then, in rounds, a Pro organization with 8 of its 12 workflows activated gets 5 activations at
the same instant from 4 browsers (3 change-page buttons and 1 changelist bulk action): it must
never end a round with more than 10 activated.
"""

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

from django.db import connections
from django.test import Client
from django.urls import reverse

from benchmarks.chaos.checks import Check, Row, Scope, measure
from benchmarks.chaos.data import OrgData, add_workflow, make_org
from benchmarks.chaos.harness import Harness
from benchmarks.chaos.procs import Sink
from benchmarks.chaos.scenarios import settle
from crm_automation.automation.models import Workflow, WorkflowRun, WorkflowStatus
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.crm.models import Organization

PRO_LIMIT = 10
# The toggling browser keeps the workflow activated this long between presses, and paused only
# briefly: most events still find it activated, so most of the drain runs next to the presses.
ACTIVE_SPELL, PAUSED_SPELL = 2.5, 0.0


# --- a browser -----------------------------------------------------------------------------------
class FormFields(HTMLParser):
    """Every value a browser would submit from the page's inputs, selects and textareas."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, list[str]] = {}
        self._select: str | None = None
        self._first_option: str | None = None
        self._selected = False
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("submit", "button", "image", "file", "reset") or (
                    kind in ("checkbox", "radio") and "checked" not in a):
                return
            self.values.setdefault(name, []).append(a.get("value") or ("on" if kind == "checkbox" else ""))
        elif tag == "select" and name:
            self._select, self._first_option, self._selected = name, None, False
        elif tag == "option" and self._select:
            value = a.get("value") or ""  # (an attribute without a value reads as None)
            if self._first_option is None:
                self._first_option = value
            if "selected" in a:
                self.values.setdefault(self._select, []).append(value)
                self._selected = True
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select:
            if not self._selected and self._first_option is not None:  # a browser sends the first option
                self.values.setdefault(self._select, []).append(self._first_option)
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.values.setdefault(self._textarea, []).append(self._text.removeprefix("\n"))
            self._textarea = None


class Browser:
    """One logged-in admin session (its own cookies and CSRF token), used by one thread."""

    def __init__(self, user) -> None:
        self.client = Client(enforce_csrf_checks=True, raise_request_exception=False)
        self.client.force_login(user)

    def form(self, url: str, **edits) -> dict:
        """GET the page, and the fields a browser would post, with the person's edits."""
        response = self.client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        parser = FormFields()
        parser.feed(response.content.decode())
        data = {k: v if len(v) > 1 else v[0] for k, v in parser.values.items()}
        data.update(edits)
        return data

    def post(self, url: str, data: dict) -> int:
        return self.client.post(url, data).status_code


def change_url(wf_id: int) -> str:
    return reverse("admin:automation_workflow_change", args=[wf_id])


def status_of(wf_id: int) -> str:
    return Workflow.objects.values_list("status", flat=True).get(pk=wf_id)


# --- the two browsers racing the drain -----------------------------------------------------------
@dataclass
class Tally:
    outcomes: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    last_saved: str = ""


def save_descriptions(browser: Browser, wf_id: int, stop: threading.Event, tally: Tally) -> None:
    url = change_url(wf_id)
    try:
        i = 0
        while not stop.is_set():
            i += 1
            text = f"chaos edit {i}"
            try:
                code = browser.post(url, browser.form(url, description=text, _save="Save"))
            except Exception as exc:  # the page itself failed: count it, keep going
                tally.outcomes["GET failed"] += 1
                tally.problems.append(f"description {i}: {type(exc).__name__}: {exc}")
                continue
            saved = Workflow.objects.values_list("description", flat=True).get(pk=wf_id) == text
            if code == 302 and saved:
                tally.outcomes["saved"] += 1
                tally.last_saved = text
            else:
                tally.outcomes[f"not saved ({code})"] += 1
                if code >= 500:
                    tally.problems.append(f"description {i}: HTTP {code}")
    finally:
        connections.close_all()


def toggle_status(browser: Browser, wf_id: int, stop: threading.Event, tally: Tally) -> None:
    """Pause and activate in turn from the change page; before each press, the status must still
    be the one the previous press set."""
    url = change_url(wf_id)
    expected = status_of(wf_id)
    presses_after_stop = 0
    try:
        time.sleep(ACTIVE_SPELL)
        while True:
            current = status_of(wf_id)
            if current != expected:
                tally.problems.append(f"transition undone: set {expected}, found {current}")
            if stop.is_set():
                presses_after_stop += 1
                if current == WorkflowStatus.ACTIVATED or presses_after_stop > 5:
                    return  # the workflow is left activated, so every later event runs
            name = "pause" if current == WorkflowStatus.ACTIVATED else "activate"
            try:
                code = browser.post(url, browser.form(url, _fsm_transition_to=name))
            except Exception as exc:
                tally.outcomes["GET failed"] += 1
                tally.problems.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            expected = status_of(wf_id)
            applied = expected == (WorkflowStatus.PAUSED if name == "pause" else WorkflowStatus.ACTIVATED)
            tally.outcomes[f"{name} {'applied' if applied else f'refused ({code})'}"] += 1
            if code >= 500:
                tally.problems.append(f"{name}: HTTP {code}")
            time.sleep(PAUSED_SPELL if expected == WorkflowStatus.PAUSED else ACTIVE_SPELL)
    finally:
        connections.close_all()


def counters_match(wf_id: int) -> Check:
    wf = Workflow.objects.get(pk=wf_id)
    runs = WorkflowRun.objects.filter(workflow_id=wf_id).exclude(status="started")
    finished, completed = runs.count(), runs.filter(status="completed").count()
    seen = (wf.run_count, wf.success_count, wf.failure_count)
    wanted = (finished, completed, finished - completed)
    return Check("run/success/failure counters = finished runs", seen == wanted,
                 f"counters {seen}, runs {wanted}")


def admin_race(h: Harness) -> list[Row]:
    tag, n = "s7", h.size(2000, 400)
    row = Row("7 admin saves + transitions racing a drain")
    sink = Sink.start(h.path(f"{tag}-smtp.jsonl"))
    cluster = None
    try:
        data = make_org("admin-race", deals=n)
        wf = add_workflow(data, description="as created")
        env = h.env(broker="orm", smtp_port=sink.port)
        h.move(env, data, tag)
        saves, toggles = Tally(), Tally()
        stop = threading.Event()
        threads = [threading.Thread(target=save_descriptions, args=(Browser(data.admin), wf.pk, stop, saves)),
                   threading.Thread(target=toggle_status, args=(Browser(data.admin), wf.pk, stop, toggles))]
        cluster = h.cluster(env, tag)
        started = time.time()
        for thread in threads:
            thread.start()
        scope = Scope([data.pk], [wf.pk], triggers=n, paused_excuses=True)
        try:
            settle(row, scope, started, h.wait)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        settle(row, scope, started, h.wait)  # events that came in while the workflow was paused
        measure(row, scope, sink.messages())
        row.checks.append(counters_match(wf.pk))
        row.checks.append(Check("no transition undone, no server error", not toggles.problems,
                                "; ".join(toggles.problems[:3])))
        row.checks.append(Check("admin saves without server error", not saves.problems,
                                "; ".join(saves.problems[:3])))
        description = Workflow.objects.values_list("description", flat=True).get(pk=wf.pk)
        row.checks.append(Check("the last saved description is kept", description == (saves.last_saved or "as created"),
                                f"{description!r} vs last saved {saves.last_saved!r}"))
        row.notes.append(f"description saves: {dict(saves.outcomes)}; transitions: {dict(toggles.outcomes)}")
        row.checks += pro_limit_rounds(h, row)
    finally:
        if cluster is not None:
            cluster.stop()
        sink.stop()
    return [row]


# --- the Pro plan's limit under concurrent activations -------------------------------------------
def activate_from_page(browser: Browser, wf_id: int, barrier: threading.Barrier, results: list) -> None:
    try:
        data = browser.form(change_url(wf_id), _fsm_transition_to="activate")
        barrier.wait(timeout=30)
        results.append(browser.post(change_url(wf_id), data))
    except Exception as exc:
        results.append(f"{type(exc).__name__}: {exc}")
    finally:
        connections.close_all()


def activate_from_list(browser: Browser, wf_ids: list[int], barrier: threading.Barrier, results: list) -> None:
    url = reverse("admin:automation_workflow_changelist")
    try:
        data = browser.form(url, action="activate_selected", _selected_action=[str(i) for i in wf_ids])
        barrier.wait(timeout=30)
        results.append(browser.post(url, data))
    except Exception as exc:
        results.append(f"{type(exc).__name__}: {exc}")
    finally:
        connections.close_all()


def activated(org: Organization) -> list[int]:
    return list(Workflow.objects.filter(organization=org, status=WorkflowStatus.ACTIVATED).values_list("pk", flat=True))


def pro_limit_round(pro: OrgData, browsers: list[Browser], h: Harness) -> tuple[int, list]:
    idle = [pk for pk in Workflow.objects.filter(organization=pro.org).exclude(
        status=WorkflowStatus.ACTIVATED).values_list("pk", flat=True)]
    h.rng.shuffle(idle)
    barrier, results = threading.Barrier(4), list[object]()
    threads = [threading.Thread(target=activate_from_page, args=(browsers[i], idle[i], barrier, results))
               for i in range(3)]
    threads.append(threading.Thread(target=activate_from_list, args=(browsers[3], idle[3:5], barrier, results)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return len(activated(pro.org)), results


def pro_limit_rounds(h: Harness, row: Row) -> list[Check]:
    rounds = h.size(5, 3)
    pro = make_org("pro-limit", plan=Organization.Plan.PRO)
    for i in range(12):
        add_workflow(pro, f"Lost follow-up {i}", to_stage="lost", activate=i < 8)
    browsers = [Browser(pro.admin) for _ in range(4)]
    counts, problems = [], []
    for _ in range(rounds):
        count, results = pro_limit_round(pro, browsers, h)
        counts.append(count)
        problems += [r for r in results if not isinstance(r, int) or r >= 500]
        for wf_id in activated(pro.org)[8:]:  # back to 8 activated for the next round
            workflow_transition(workflow_id=wf_id, name="pause", by=None)
    row.notes.append(f"Pro org, activated after each round of 5 simultaneous activations from 8: {counts}")
    return [Check(f"Pro org never above {PRO_LIMIT} activated", max(counts) <= PRO_LIMIT, str(counts)),
            Check("activation requests without server error", not problems, "; ".join(map(str, problems[:3])))]
