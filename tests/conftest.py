"""Shared fixtures: an organization with stages, and the three people every view test needs —
an owner (org admin), a teammate (ops) and an outsider with an organization of their own."""

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from _pytest import python as python_plugin  # its pytest_pyfunc_call: how pytest calls a test
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from crm_automation.automation.runtime.tasks import drain_events
from crm_automation.automation.services.workflows import free_name, workflow_create, workflow_transition
from crm_automation.crm.models import Contact, Deal, Lead, Membership, Organization, Stage
from tests.fake_ai import anthropic, model_server, openai  # noqa: F401 (fixtures of the AI tests)
from tests.roomy_stack import in_roomy_stack
from tests.template_db import copy_from_template

STAGES = ["new", "qualified", "proposal", "negotiation", "won", "lost"]
# Redis databases the tests flush, one per pytest-xdist worker: 0 is the developer's, 12 to 15
# belong to single-process runs and to the benchmarks.
WORKER_REDIS_DBS = range(11, 0, -1)


def pytest_configure(config: pytest.Config) -> None:
    """`make test` runs the suite in pytest-xdist workers, processes that run their share of the
    tests at the same time. pytest-django gives each its own test database (test_<name>_gw0 on
    PostgreSQL, VAR_DIR/test_crm.sqlite3_gw0 on SQLite). Here the processes a worker's tests
    start get a VAR_DIR of their own (VAR_DIR/gw0: a default SQLite file, sent emails, the demo
    password), and each worker a Redis database for the tests that flush one
    (tests/test_e2e_qcluster.py and tests/test_throttles.py read TEST_REDIS_URL and
    TEST_THROTTLE_REDIS_URL when imported). Screenshots stay in VAR_DIR/screenshots/<test>/:
    test names are unique."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    os.environ["VAR_DIR"] = str(Path(settings.VAR_DIR) / worker)
    index = int(worker.removeprefix("gw"))
    if index >= len(WORKER_REDIS_DBS):
        raise pytest.UsageError(f"at most {len(WORKER_REDIS_DBS)} xdist workers: one Redis database each")
    for name, default in (("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
                          ("TEST_THROTTLE_REDIS_URL", "redis://127.0.0.1:6379/13")):
        url = urlsplit(os.environ.get(name, default))
        os.environ[name] = urlunsplit(url._replace(path=f"/{WORKER_REDIS_DBS[index]}"))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist load` (what `make test` uses) hands out the tests one at a time: tests/xdist_schedule.py."""
    if config.getvalue("dist") != "load":
        return None
    from tests.xdist_schedule import OneAtATime

    return OneAtATime(config, log)


# The files whose tests take 5-30 s each (they start processes, clusters or a fuzzer). Handed out
# first within their group, they run beside the short ones instead of after them: the suite ends
# on short tests on every worker, not on one rolling restart while the other workers wait.
LONG_FILES = frozenset({"test_move_to_postgres.py", "test_rolling_restart.py", "test_e2e_qcluster.py",
                        "test_api_fuzz.py", "test_deploy.py", "test_health.py", "test_broker_outages.py"})


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Any:
    result = yield
    # After pytest-django's order (no database, database, transactional) and within it: the long
    # files first. A stable sort on the same groups, so that order is kept; browser tests stay last
    # (tests/browser/conftest.py says why).
    items.sort(key=lambda item: (Path(item.path).parent.name == "browser", _django_group(item),
                                 Path(item.path).name not in LONG_FILES))
    return result


def _django_group(item: pytest.Item) -> int:
    """pytest-django's order: 0 database tests, 1 transactional ones, 2 those without a database."""
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", [])
    if (marker is not None and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences"))) or (
            "transactional_db" in fixtures or "live_server" in fixtures):
        return 1
    return 0 if marker is not None or "db" in fixtures else 2


def sqlite_pass_only(why: str):
    """CI runs the suite twice, on SQLite and on PostgreSQL. A slow test whose subject does not
    depend on the suite's database (it makes its own, or tests a broker or a process) runs in
    the SQLite pass only."""
    return pytest.mark.skipif(connection.vendor == "postgresql", reason=f"in the SQLite pass only: {why}")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """On SQLite, each worker's test database is a copy of a migrated template
    (tests/template_db.py); pytest-django keeps it instead of migrating it (django_db_keepdb)."""
    if _from_template():
        copy_from_template(connection.settings_dict["TEST"]["NAME"])


@pytest.fixture(scope="session")
def django_db_keepdb(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getvalue("reuse_db")) or _from_template()


def _from_template() -> bool:
    """A SQLite test database in a file (in memory, it is left to pytest-django; `--create-db`
    migrates as before)."""
    name = connection.settings_dict["TEST"].get("NAME")
    return connection.vendor == "sqlite" and bool(name) and name != ":memory:"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, which it drops at the end. On PostgreSQL a server thread
    of a browser test can still hold a session then: Chromium keeps its connections alive, and a
    live server's request threads are daemons nobody joins, so the pool never gets their
    connection back and DROP DATABASE is refused ("being accessed by other users"). End such
    leftover sessions of the test database first."""
    yield
    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture(autouse=True)
def _test_settings(settings):
    # Tests call the worker steps directly; the e2e test turns nudges back on.
    settings.AUTOMATION = {**settings.AUTOMATION, "NUDGE": False}
    # A slow password hasher was 90 % of the suite's time; nothing here tests hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_org(slug: str, plan: str = Organization.Plan.PRO) -> Organization:
    org = Organization.objects.create(name=slug.title(), slug=slug, plan=plan)
    for order, s in enumerate(STAGES):
        Stage.objects.create(organization=org, slug=s, name=s.title(), order=order,
                             is_won=s == "won", is_lost=s == "lost")
    return org


def make_user(username: str, org: Organization | None, role: str | None, **extra):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw-123456",
                                                is_staff=True, **extra)
    if org is not None:
        assert role is not None, "a member has a role"
        Membership.objects.create(user=user, organization=org, role=role)
    return user


@pytest.fixture
def org(db):
    return make_org("acme")


@pytest.fixture
def other_org(db):
    return make_org("rival")


@pytest.fixture
def owner(org):
    return make_user("owner", org, Membership.Role.ADMIN, first_name="Olive")


@pytest.fixture
def teammate(org):
    return make_user("teammate", org, Membership.Role.OPS)


@pytest.fixture
def viewer(org):
    return make_user("viewer", org, Membership.Role.VIEWER)


@pytest.fixture
def outsider(other_org):
    return make_user("outsider", other_org, Membership.Role.ADMIN)


def stage(org, slug: str) -> Stage:
    return Stage.objects.get(organization=org, slug=slug)


@pytest.fixture
def contact(org):
    return Contact.objects.create(organization=org, first_name="Ada", last_name="Lovelace",
                                  email="ada@example.com", company="Analytical")


@pytest.fixture
def deal(org, contact, owner):
    return Deal.objects.create(organization=org, title="Website", amount=12000,
                               stage=stage(org, "proposal"), contact=contact, owner=owner)


@pytest.fixture
def lead(org, owner):
    return Lead.objects.create(organization=org, name="Grace Hopper", email="grace@example.com",
                               company="Compiler Co", owner=owner)


KICKOFF_ACTIONS = [
    {"type": "create_task", "config": {"title": "Kick off {{deal.title}}", "assignee": "owner"}},
    {"type": "update_field", "config": {"field": "probability", "value": 100}},
    {"type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Welcome {{deal.title}}",
                                      "body": "Hi {{deal.contact.first_name}}"}},
]


def make_workflow(org, *, activate=True, trigger_type="deal_stage_change", trigger_config=None,
                  actions=None, **kwargs):
    if trigger_config is None and trigger_type == "deal_stage_change":
        trigger_config = {"to_stage": "won"}
    # Names are unique in an organization: without a name, the first is "Kickoff", the next
    # "Kickoff (2)" … (a test that cares about the name passes one).
    name = kwargs.pop("name", None) or free_name(org.pk, "Kickoff")
    workflow = workflow_create(organization=org, name=name,
                               trigger_type=trigger_type, trigger_config=trigger_config,
                               actions=KICKOFF_ACTIONS if actions is None else actions, **kwargs)
    if activate:
        workflow = workflow_transition(workflow_id=workflow.pk, name="activate", by=None)
    return workflow


def drain() -> int:
    return drain_events(fan_out=False)


def time_passes(**runs) -> None:
    """The waits of waiting runs (all, or those matching `runs`) are over: as if their time came."""
    from datetime import timedelta

    from django.utils import timezone

    from crm_automation.automation.models import WorkflowRun, WorkflowRunAction

    past = timezone.now() - timedelta(seconds=1)
    waiting = WorkflowRun.objects.filter(status="waiting", **runs)
    for step in WorkflowRunAction.objects.filter(run__in=waiting, status="waiting"):
        # A retry's wait, a question's timeout, or a wait step's end.
        key = next((k for k in ("retry_at", "timeout_at") if step.result.get(k)), "wake_at")
        step.result = {**step.result, key: past.isoformat()}
        step.save(update_fields=["result"])
    waiting.update(wake_at=past)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool:
    """Each test's body runs with a data stack chunk of its own to grow in (tests/roomy_stack.py):
    the fuzz spent a fifth of its time in the kernel without it."""
    in_roomy_stack(lambda: python_plugin.pytest_pyfunc_call(pyfuncitem))
    return True
