"""A schema-driven fuzz of /api/v1/: schemathesis reads the OpenAPI document the app serves and
sends every operation generated inputs, valid and invalid, as an organization admin whose
organization has some of everything (deals, a lead, workflows, runs, a question, a webhook
endpoint). Any answer is fine except a 5xx: never a 500 for any input.

In process (WSGI, no server), inside the test's transaction like any view test, so it runs the
same on SQLite and PostgreSQL. Each request runs in a savepoint that is rolled back, so every
generated case meets the same records (and a database error cannot poison the test's
transaction). Path ids are either generated or, about half the time, those records' ids, so
the fuzz reaches the views behind the 404s.

A few examples per operation keep the file around a minute; for a longer hunt locally:
    API_FUZZ_EXAMPLES=200 API_FUZZ_SEED=random VAR_DIR=/tmp/fuzz .venv/bin/python -m pytest tests/test_api_fuzz.py
"""

import functools
import os
import traceback
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import strategies as st
from knox.models import AuthToken
from schemathesis.checks import not_a_server_error
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.result import Ok
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.pytest._test_builder import build_operation_test  # (no public equivalent)
from schemathesis.python._constants.orchestrator import make_constants_value_source
from schemathesis.schemas import APIOperation

from config.wsgi import application
from crm_automation.api.throttling import PerPerson
from crm_automation.automation.models import Workflow
from crm_automation.crm.models import Stage, Task
from crm_automation.webhooks.services import webhook_endpoint_create
from crm_automation.webhooks.throttling import InboundWebhookThrottle
from tests.conftest import make_workflow
from tests.test_api_runs import bulk_runs
from tests.test_approvals import SIDES
from tests.test_graph_engine import win

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "12"))
SEED = os.environ.get("API_FUZZ_SEED", "")  # empty: the same cases every run (CI); "random" or a number
pytestmark = pytest.mark.fuzz  # `make check` leaves it out

CONFIG = schemathesis.Config.from_dict({
    "generation": {"mode": "all", "max-examples": EXAMPLES, "database": "none",
                   "deterministic": not SEED},
    **({"seed": int(SEED)} if SEED.isdigit() else {}),
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": False}},
    # The fixture is function-scoped on purpose: each request is rolled back, so every example
    # meets the same records.
    "suppress-health-check": ["all"],
})
# Read at collection time, before any test database exists: the schema request's throttle counts
# in a memory cache meanwhile instead of the shared database cache (settings.CACHES).
with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}):
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application, config=CONFIG)

# The records of the organization the current test made: by the collection a path starts with,
# and by the name of a body field that links to a record.
KNOWN: dict[str, list] = {}
LINKS = {"stage": "stage", "contact": "contacts", "owner": "member", "assignee": "member", "deal": "deals",
         "lead": "leads", "entity_id": "records", "workflow": "workflows", "version": "version"}


def _collection(operation) -> str:
    return operation.path.removeprefix("/api/v1/").split("/", 1)[0]


def _path_choices(operation, path_parameters) -> tuple[str, list] | None:
    """(name, ids): the one path parameter an existing record's id can fill."""
    known = KNOWN.get(_collection(operation))
    if not known or not isinstance(path_parameters, dict) or len(path_parameters) != 1:
        return None
    return next(iter(path_parameters)), known


def _body_choices(body) -> dict[str, list]:
    """The body's fields that link to records, and the ids of existing ones."""
    if not isinstance(body, dict):
        return {}
    return {name: KNOWN[LINKS[name]] for name in body if name in LINKS and KNOWN.get(LINKS[name])}


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Half the time, the id of a record that exists (in the caller's organization)."""
    found = _path_choices(context.operation, path_parameters)
    if found is None:
        return st.just(path_parameters)
    name, known = found
    return st.one_of(st.just(path_parameters), st.sampled_from(known).map(lambda value: {name: value}))


@schema.hook
def flatmap_body(context, body):
    """Each link (a deal's stage, a task's deal …), half the time, to a record that exists."""
    choices = _body_choices(body)
    if not choices:
        return st.just(body)
    return st.fixed_dictionaries({name: st.one_of(st.just(body[name]), st.sampled_from(known))
                                  for name, known in choices.items()}).map(lambda links: {**body, **links})


def _coverage_reaches_records(case) -> None:
    """The coverage phase varies one part of a request at a time, without the hooks above: where
    the path or the body is a valid one, name existing records, so the variations of the other
    parts get past the 404 (or the "not found in this organization") to the code behind it."""
    meta = case.meta
    if meta is None or meta.phase.name != "coverage":
        return
    valid = {location.value for location, info in meta.components.items() if info.mode.is_positive}
    found = _path_choices(case.operation, case.path_parameters)
    if found is not None and "path" in valid:
        case.path_parameters = {found[0]: found[1][0]}
    choices = _body_choices(case.body)
    if choices and "body" in valid:
        case.body = {**case.body, **{name: known[0] for name, known in choices.items()}}


@pytest.fixture
def fuzz_org(org, owner, contact, deal, lead, monkeypatch):
    """One of each thing the API shows, and the owner's token; KNOWN lists their ids."""
    monkeypatch.setattr(PerPerson, "THROTTLE_RATES", {"per_person": "1000000/min"})  # the fuzz is no abuse
    monkeypatch.setattr(InboundWebhookThrottle, "THROTTLE_RATES", {"webhook": "1000000/min"})
    asked = win(org, deal, *SIDES)  # a live workflow and a run waiting on a question
    manual = make_workflow(org, name="By hand", trigger_type="manual_deal", trigger_config={})
    draft = make_workflow(org, name="Draft", activate=False)
    failed, paused, done = bulk_runs(manual, [
        {"minutes_ago": m, "status": s, "trigger_entity_id": deal.pk, "finished_at": timezone.now() - timedelta(
            minutes=m - 1)} for m, s in ((3, "failed"), (2, "paused"), (1, "completed"))])
    # The counters the engine would have kept for the two that ended (a retry takes its run back off).
    Workflow.objects.filter(pk=manual.pk).update(run_count=2, success_count=1, failure_count=1)
    task = Task.objects.create(organization=org, title="Call back", deal=deal, assignee=owner)
    endpoint, _ = webhook_endpoint_create(organization=org, name="Website form", by=owner)
    KNOWN.clear()
    KNOWN.update({
        "deals": [str(deal.pk)], "leads": [str(lead.pk)], "contacts": [contact.pk], "tasks": [task.pk],
        "stages": list(Stage.objects.filter(organization=org).values_list("pk", flat=True)[:2]),
        "workflows": [asked.workflow_id, manual.pk, draft.pk],
        "runs": [asked.pk, failed.pk, paused.pk, done.pk],
        "approvals": list(asked.actions.filter(node_id="ask").values_list("pk", flat=True)),
        "webhook-endpoints": [str(endpoint.public_id)], "hooks": [str(endpoint.public_id)],
        # Body links.
        "stage": ["proposal", "won"], "member": [owner.username], "records": [str(deal.pk), str(lead.pk)],
        "version": [1],
    })
    yield AuthToken.objects.create(user=owner)[1]
    KNOWN.clear()


@pytest.fixture
def server_errors():
    """The traceback of each exception a view let through (the 500's cause). As Django's test
    client does, requests do not close the connection: it holds the test's transaction."""
    found = []

    def record(sender, request=None, **kwargs):
        found.append(traceback.format_exc())

    got_request_exception.connect(record, weak=False)
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield found
    finally:
        got_request_exception.disconnect(record)
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


# The operations by label, and the hypothesis test of each one built only when it runs: built at
# collection (schemathesis's `schema.parametrize()`), the coverage cases of all 72 operations were
# made in every pytest-xdist worker, 5 s each, for the one worker that runs a given operation.
# An operation the schema describes wrongly is a failing case of its own, as with schemathesis's
# plugin.
OPERATIONS: dict[str, APIOperation | InvalidSchema] = {
    (found := result.ok() if isinstance(result, Ok) else result.err()).label: found
    for result in schema.get_all_operations()}


@pytest.mark.parametrize("label", list(OPERATIONS))
def test_no_input_gets_a_server_error(label, fuzz_org, server_errors):
    operation = OPERATIONS[label]
    if isinstance(operation, InvalidSchema):
        raise operation
    hook = operation.path.startswith("/api/v1/hooks/")  # no token: the signature is the authentication

    def check(case):
        del server_errors[:]
        _coverage_reaches_records(case)
        with transaction.atomic():
            response = case.call(headers={} if hook else {"Authorization": f"Token {fuzz_org}"})
            transaction.set_rollback(True)
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except BaseExceptionGroup as failure:  # schemathesis's report (the request as curl), the server's traceback
            raise AssertionError("\n".join([str(failure), *server_errors])) from None
        if hook and case.method.upper() == "POST":  # nothing generated can carry a valid signature
            assert 400 <= response.status_code < 500, (response.status_code, response.text)

    # (schemathesis's own pytest plugin builds it the same way, with the same feedback sources)
    build_operation_test(config=schema.config, operation=operation, test_func=check, given_kwargs={},
                         feedback=FeedbackSources(constants_value_source=CONSTANTS()))()


@functools.cache
def CONSTANTS():  # noqa: N802 (a constant made once, on first use)
    return make_constants_value_source(schema)
