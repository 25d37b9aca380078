"""One log line per run finished and per step failure, for operators and log shippers.

    INFO    crm_automation.runs Run 812 completed in 340 ms: workflow 5 “Kickoff” v3, organization 2 (deal_stage_change)
    WARNING crm_automation.runs Run 813 failed in 1210 ms: workflow 5 “Kickoff” v3, organization 2 … — Send email: …
    WARNING crm_automation.runs Step send (send_email) of run 813 failed, attempt 1, policy retry — Send email: …

With LOG_FORMAT=json each line is one JSON object with these values as fields (run_id,
workflow_id, workflow, version, organization_id, status, duration_ms, trigger_type, error_kind;
for a step: node_id, action_type, attempt, policy). Lines are written after the transaction that
finished the run commits: a rolled-back segment logs nothing, a run is logged once.

What is never logged: the error's full text (it may quote a template or an address), rendered
templates, email bodies, payloads, secrets. `error_kind` is the step and the first words of the
reason (kpis.failure_kind), the same grouping the Health tab counts.
"""

import logging
from collections.abc import Iterable
from functools import partial
from typing import Any

from django.db import transaction

from crm_automation.automation.models import RunStatus, WorkflowRun
from crm_automation.automation.ops.kpis import failure_kind

logger = logging.getLogger("crm_automation.runs")


def runs_finished(runs: Iterable[WorkflowRun]) -> None:
    """Log each finished run (WorkflowRun objects with status, started_at and finished_at set)
    once the current transaction commits."""
    if runs and logger.isEnabledFor(logging.WARNING):
        lines = [_run_fields(run) for run in runs if not run.simulated]
        if lines:
            transaction.on_commit(partial(_write_runs, lines))


def step_failed(run: WorkflowRun, *, node_id: str, action_type: str, attempt: int, policy: str, error: str) -> None:
    """Log a step's failure (whatever its error policy then does) once the transaction commits."""
    if run.simulated:
        return
    fields = {"run_id": run.pk, "workflow_id": run.workflow_id, "organization_id": run.organization_id,
              "node_id": node_id, "action_type": action_type, "attempt": attempt, "policy": policy,
              "error_kind": failure_kind(error)}
    transaction.on_commit(partial(_write_step, fields))


def _run_fields(run: WorkflowRun) -> dict[str, Any]:
    assert run.finished_at is not None, "only finished runs are logged"
    # (the version and the workflow are in memory wherever runs are executed: no query to log)
    fields = {"run_id": run.pk, "workflow_id": run.workflow_id, "version": run.version.number,
              "workflow": run.workflow.name, "organization_id": run.organization_id, "status": run.status,
              "trigger_type": run.trigger_type,
              "duration_ms": round((run.finished_at - run.started_at).total_seconds() * 1000)}
    if run.status != RunStatus.COMPLETED:
        fields["error_kind"] = failure_kind(run.error)
    return fields


def _write_runs(lines: list[dict[str, Any]]) -> None:
    for fields in lines:
        ok = fields["status"] == RunStatus.COMPLETED
        if not ok and not logger.isEnabledFor(logging.WARNING) or ok and not logger.isEnabledFor(logging.INFO):
            continue
        because = "" if ok else f" — {fields['error_kind']}"
        logger.log(logging.INFO if ok else logging.WARNING,
                   "Run %s %s in %s ms: workflow %s “%s” v%s, organization %s (%s)%s", fields["run_id"],
                   fields["status"], fields["duration_ms"], fields["workflow_id"], fields["workflow"],
                   fields["version"], fields["organization_id"], fields["trigger_type"], because, extra=fields)


def _write_step(fields: dict[str, Any]) -> None:
    logger.warning("Step %s (%s) of run %s failed, attempt %s, policy %s — %s", fields["node_id"],
                   fields["action_type"], fields["run_id"], fields["attempt"], fields["policy"],
                   fields["error_kind"], extra=fields)
