"""Pages that show runs in progress update by themselves (static/web/live.js).

A page that shows runs not yet over carries a *watch*: a signed token naming its organization and
what it watches (these runs, or the organization's open approvals) and the *marker* of what it
showed: a short text that changes whenever any of it changes (a run's status or wake-up time, a
step added, started, finished, waiting). The script asks `/crm/automation/live/?t=<token>` for
the marker every second; only when it differs does it fetch the page again and swap the parts
that show runs (`data-live-region`), so an open page costs the server one indexed query a second
and a full page only when something changed (a page that only shows the runs' statuses, the run
history, takes them from the probe's answer and fetches nothing else). It stops once every run
it watches is over.

The token is the probe's only credential: the probe reads no session and no user, which is what
keeps it to one query. It names ids of the organization the page was rendered for, and the
probe answers only with markers (statuses and times, nothing a person typed); a person whose
membership ends meanwhile learns at most that those runs moved on, until the token expires.
"""

import hashlib
from dataclasses import dataclass

from django.core import signing
from django.db.models import Count, Max, Min, Q

from crm_automation.automation.models import RUN_OVER, RunStatus, StepStatus, WorkflowRun, WorkflowRunAction
from crm_automation.automation.nodes import approval as questions

SALT = "crm_automation.web.live"
MAX_AGE = 12 * 3600  # a page open longer than this says so and stops updating (live.js)
INTERVAL_MS = 1000
OVER = RUN_OVER
MAX_RUNS = 200  # what one page shows at most (the run list's page is 50)
RUNS, APPROVALS = "runs", "approvals"
STALE = "stale"  # what a page carries when it is older than its watch (runs_watch): never a digest


@dataclass(frozen=True)
class Watch:
    organization_id: int
    kind: str  # RUNS or APPROVALS
    run_ids: tuple[int, ...] = ()

    def token(self) -> str:
        return signing.dumps({"o": self.organization_id, "k": self.kind, "r": list(self.run_ids)}, salt=SALT,
                             compress=True)

    @classmethod
    def read(cls, token: str) -> "Watch":
        """The watch a token names; signing.BadSignature (also when it expired) otherwise."""
        data = signing.loads(token, salt=SALT, max_age=MAX_AGE)
        ids = tuple(int(i) for i in data.get("r", [])[:MAX_RUNS])
        return cls(organization_id=int(data["o"]), kind=str(data["k"]), run_ids=ids)

    def state(self) -> tuple[str, bool]:
        """(marker, over): one query. `over`: nothing watched can change by itself any more."""
        marker, over, _ = self.probe()
        return marker, over

    def probe(self) -> tuple[str, bool, dict[int, dict]]:
        """(marker, over, each run's status and marker): one query. A page that only shows the
        runs' statuses (the run history) updates them from this alone, whatever the traffic."""
        if self.kind == APPROVALS:
            return _approvals_marker(self.organization_id), False, {}
        return _runs_marker(self.organization_id, self.run_ids)


def _digest(parts: list) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()


def _runs_marker(organization_id: int, run_ids: tuple[int, ...]) -> tuple[str, bool, dict[int, dict]]:
    moving = [StepStatus.PENDING, StepStatus.RUNNING, StepStatus.WAITING]
    rows = list(WorkflowRun.objects.filter(pk__in=run_ids, organization_id=organization_id)
                .values("pk", "status", "wake_at", "finished_at")
                .annotate(steps=Count("actions"), last=Max("actions__id"), ended=Max("actions__finished_at"),
                          begun=Max("actions__started_at"), open=Count("actions", filter=Q(actions__status__in=moving)),
                          waits=Count("actions", filter=Q(actions__status=StepStatus.WAITING)))
                .order_by("pk"))
    over = all(row["status"] in OVER for row in rows)
    runs = {row["pk"]: {"status": row["status"], "label": RunStatus(row["status"]).label,
                        "marker": _digest(sorted(row.items()))} for row in rows}
    return _digest([sorted(row.items()) for row in rows]), over, runs


def _approvals_marker(organization_id: int) -> str:
    # Open questions, as the inbox lists them (selectors.open_approvals): an answer is on the
    # step before its run goes on, so the answered ones are counted apart.
    found = WorkflowRunAction.objects.filter(run__organization_id=organization_id, action_type=questions.USER_INPUT,
                                             status=StepStatus.WAITING).aggregate(
        n=Count("id"), last=Max("id"), first=Min("id"), answered=Count("id", filter=Q(result__has_key="decision")))
    return _digest(sorted(found.items()))


def runs_watch(organization_id: int, runs) -> dict | None:
    """What a page showing `runs` carries (template: web/_live.html): None when all are over.

    The page read its runs before this reads their marker. A run that moved on in between (the
    worker finished it while the page was drawn) would leave the page showing it as it was,
    with the marker of after: the probe would answer "no change, all over" and the page would
    stay as it is for good. So when a run's status now is not the one the page read, the page
    carries a marker no probe gives (STALE), and its first probe fetches it again. (A step
    that moved on in between while its run's status did not is the next change's to show: a
    run not over changes again.)"""
    shown = {run.pk: run.status for run in runs if run.status not in OVER}
    ids = tuple(shown)[:MAX_RUNS]
    if not ids:
        return None
    watch = Watch(organization_id, RUNS, ids)
    marker, _, now = watch.probe()
    if any(now.get(pk, {}).get("status") != shown[pk] for pk in ids):
        marker = STALE
    return _carried(watch, marker)


def approvals_watch(organization_id: int) -> dict:
    """Read before the page reads its questions (it names no ids): a change after it is then
    the next probe's."""
    watch = Watch(organization_id, APPROVALS)
    return _carried(watch, watch.state()[0])


def _carried(watch: Watch, marker: str) -> dict:
    return {"token": watch.token(), "marker": marker, "interval": INTERVAL_MS}
