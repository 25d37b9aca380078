"""Automation data: workflows and their versions, the event outbox, decisions and run history."""

from functools import cached_property

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.functions import Lower, Now
from django_fsm import FSMField, transition

from crm_automation.automation.definition import catalog
from crm_automation.crm.models import Organization


class WorkflowStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVATED = "activated", "Activated"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


def _can_manage(instance: models.Model, user: object) -> bool:
    # Imported here: selectors import crm models, which is fine, but keep the model module light.
    from crm_automation.crm.selectors import user_has_role

    assert isinstance(instance, Workflow)  # (django-fsm types a permission check for any model)
    return user_has_role(user, instance.organization_id, "admin")


class Workflow(models.Model):
    class ErrorHandling(models.TextChoices):
        STOP = "stop", "Stop at the first failed action"
        CONTINUE = "continue", "Continue with the next action"
        PAUSE = "pause", "Pause the run and notify the admins"
        FALLBACK = "fallback", "Go on along the failed step's error edge (its fallback)"

    class Reenrollment(models.TextChoices):
        NOT_WHILE_RUNNING = "not_while_running", "Not while the record has an unfinished run of it"
        ONCE = "once", "Only once per record, ever"
        EVERY_TIME = "every_time", "Every time the trigger fires"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="workflows")
    name = models.CharField(max_length=200)
    key = models.SlugField(
        max_length=80, help_text="The workflow's id in YAML (kebab-case), unique in the organization.")
    description = models.TextField(blank=True)
    # The draft, as a workflow document (definition/documents.py): the one stored shape of what
    # the workflow does. A draft workflow's saves are versions at once; a live one's wait for
    # publishing. The columns above and `trigger_type` are read from it when it is written
    # (Workflow.take_document), for the queries that need them.
    document = models.JSONField(help_text="The draft as a workflow document (what export writes).")
    # A workflow may delete records (its "delete a record" steps) only once an admin allowed it
    # (services.workflows.workflow_allow_deletion); the document cannot say so by itself.
    allows_deletion = models.BooleanField(default=False, editable=False, help_text=(
        "An admin allowed this workflow's “Delete a record” steps to delete records."))
    class Mode(models.TextChoices):
        EXECUTE = "execute", "Execute: runs do what they say"
        SHADOW = "shadow", "Shadow: runs on real events, every effect previewed, nothing sent"

    # Shadow mode (docs/product.md#shadow-mode): an admin's choice, like allows_deletion; not in the document.
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.EXECUTE, editable=False)
    shadow_since = models.DateTimeField(null=True, blank=True, editable=False)
    trigger_type = models.CharField(max_length=40, choices=catalog.TRIGGER_CHOICES)
    status = FSMField(default=WorkflowStatus.DRAFT, choices=WorkflowStatus.choices, protected=False)
    version = models.PositiveIntegerField(default=0, editable=False)
    # Counts saved edits of the draft: a page that opened an older revision cannot overwrite
    # newer edits.
    draft_revision = models.PositiveIntegerField(default=0, editable=False)
    # Who saved the last of those edits and when (a page whose save is refused as stale says so).
    edited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="+", editable=False)
    edited_at = models.DateTimeField(null=True, blank=True, editable=False)
    current_version = models.ForeignKey(
        "WorkflowVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+", editable=False
    )
    # A version being released to a share of the records (rollouts.py); the others run current_version.
    rollout = models.ForeignKey("Rollout", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                                editable=False)
    run_count = models.PositiveIntegerField(default=0, editable=False)
    success_count = models.PositiveIntegerField(default=0, editable=False)
    failure_count = models.PositiveIntegerField(default=0, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Reporting, not behaviour (so not in the document, not versioned): the minutes of manual
    # work one completed run replaces (ops/costs.py counts hours saved); 0 counts nothing.
    minutes_saved = models.PositiveIntegerField(default=0, db_default=0, help_text=(
        "Minutes of manual work one completed run replaces (0: not counted)."))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["organization", "trigger_type", "status"])]
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="uniq_workflow_key"),
            # A name tells workflows apart in lists, run filters, messages and a record's "why
            # not" table, so it is unique per organization whatever its case. Archived workflows
            # keep theirs: their runs and decisions still show it.
            models.UniqueConstraint(Lower("name"), "organization", name="uniq_workflow_name_ci",
                                    violation_error_message="Another workflow of this organization has this "
                                                            "name (names are unique, whatever their case)."),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def started_by_a_person(self) -> bool:
        """Whether its trigger is "started by a person" (any other is started by hand only by an
        admin, with a reason: triggers/on_demand.py)."""
        return self.trigger_type in catalog.MANUAL

    @property
    def definition(self) -> dict:
        """The draft's definition (compiled from `document`): what a new version would run."""
        from crm_automation.automation.definition import compiled  # (it reads documents, which read this module)

        return compiled.of_draft(self)

    def take_document(self, document: dict) -> None:
        """Make `document` (valid, in the form documents.document_of writes) the draft: the one
        place the columns that repeat part of it (key, name, description, trigger type) are
        written. Not saved here."""
        self.document = document
        self.key, self.name = document["id"], document["name"]
        self.description = document.get("description", "")
        self.trigger_type = self.definition["trigger_type"]

    # The transitions only move the state; `services.workflow_transition` checks the reasons
    # (valid definition, plan limit) under a lock and is the only caller.
    @transition(field=status, source=[WorkflowStatus.DRAFT, WorkflowStatus.PAUSED],
                target=WorkflowStatus.ACTIVATED, permission=_can_manage,
                custom={"label": "Activate", "admin": True})
    def activate(self) -> None:
        pass

    @transition(field=status, source=WorkflowStatus.ACTIVATED, target=WorkflowStatus.PAUSED,
                permission=_can_manage, custom={"label": "Pause", "admin": True})
    def pause(self) -> None:
        pass

    @transition(field=status,
                source=[WorkflowStatus.DRAFT, WorkflowStatus.ACTIVATED, WorkflowStatus.PAUSED],
                target=WorkflowStatus.ARCHIVED, permission=_can_manage,
                custom={"label": "Archive", "admin": True})
    def archive(self) -> None:
        pass


class WorkflowVersion(models.Model):
    """An immutable snapshot of a workflow's document. Runs point at the one they executed."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    document = models.JSONField(help_text="The workflow document as it was saved (what compare shows).")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["workflow", "number"], name="uniq_workflow_version")]

    def __str__(self) -> str:
        return f"v{self.number}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("Workflow versions are immutable; create a new one instead.")
        super().save(*args, **kwargs)

    @cached_property
    def definition(self) -> dict:
        """What the engine runs: the document compiled, once per process (compiled.py), and kept
        on the instance (a version never changes), so a hot path that reads it again stays here."""
        from crm_automation.automation.definition import compiled  # (it reads documents, which read this module)

        return compiled.of_version(self)


class AutomationEvent(models.Model):
    """The outbox: one row per trigger, written in the same transaction as the change."""

    # The outbox sits on every save path, so it carries no secondary index and no foreign-key
    # check: the row is written from a record that exists, in the same transaction. Lookups by
    # record go through WorkflowDecision.entity_id, written by the workers.
    organization = models.ForeignKey(Organization, on_delete=models.DO_NOTHING, related_name="+",
                                     db_index=False, db_constraint=False)
    kind = models.CharField(max_length=40, choices=catalog.TRIGGER_CHOICES)
    entity_type = models.CharField(max_length=10)
    entity_id = models.UUIDField()
    payload = models.JSONField(default=dict)
    # Loop guard: 0 for a change made by a person; a change made by a run carries depth + 1.
    depth = models.PositiveSmallIntegerField(default=0)
    caused_by_run_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    claimed_until = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, db_default="", help_text="Why this event could not be dispatched.")

    class Meta:
        indexes = [
            models.Index(fields=["id"], name="event_pending_idx", condition=models.Q(processed_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.entity_type} {self.entity_id}"


class WorkflowDecision(models.Model):
    """Why a candidate workflow did or did not run for an event (invariant 6)."""

    class Outcome(models.TextChoices):
        MATCHED = "matched", "Matched: run started"
        MATCHED_UNLOGGED = "matched_unlogged", "Matched: ran without history (monthly quota)"
        STAGE_FILTER = "stage_filter", "Stage filter did not match"
        ENDPOINT_FILTER = "endpoint_filter", "Webhook came to another endpoint"
        FIELD_FILTER = "field_filter", "Watched field did not change"
        CONDITION_FALSE = "condition_false", "Condition was false"
        PAUSED = "paused", "Workflow paused"
        PLAN = "plan", "Plan does not include automation"
        LOOP_GUARD = "loop_guard", "Loop guard: chain too deep"
        RECORD_MISSING = "record_missing", "Record no longer exists"
        ALREADY_ENROLLED = "already_enrolled", "Already enrolled"
        DRAFT = "draft", "Draft: not activated"
        HELD = "held", "Held for review: part of a bulk change"
        DIGESTED = "digested", "In a digest: part of a bulk change"

    event = models.ForeignKey(AutomationEvent, on_delete=models.CASCADE, related_name="decisions")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="decisions")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    entity_id = models.UUIDField(db_index=True, help_text="The deal or lead the event is about.")
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "workflow"], name="uniq_decision")]
        indexes = [models.Index(fields=["workflow", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()}: {self.reason}"


class Enrollment(models.Model):
    """A record enrolled in a workflow that enrolls it only once (Workflow.reenrollment).

    The unique (workflow, record) pair is what makes "never again" hold when several workers
    dispatch events of one record at once. ("Not while running" needs no row: the unfinished run
    holds the place, WorkflowRun.holds_enrollment.)
    """

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    entity_id = models.UUIDField()
    event_id = models.BigIntegerField(help_text="The event whose run enrolled the record.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workflow", "entity_id"], name="uniq_enrollment")]

    def __str__(self) -> str:
        return f"{self.entity_id} in workflow {self.workflow_id}"

class RunStatus(models.TextChoices):
    STARTED = "started", "Started"
    WAITING = "waiting", "Waiting"  # parked by a wait step until wake_at; holds no lease
    COMPLETED = "completed", "Completed"
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"
    PAUSED = "paused", "Paused"  # a failed step's policy asks a person: retry it, skip it or cancel
    CANCELLED = "cancelled", "Cancelled"  # by a person; counted neither as a success nor as a failure


# A run in one of these is over: nothing more happens to it by itself (a paused run waits for a person).
RUN_OVER = frozenset({RunStatus.COMPLETED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.CANCELLED})


class WorkflowRun(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="runs")
    event = models.ForeignKey(AutomationEvent, on_delete=models.CASCADE, related_name="runs")
    trigger_type = models.CharField(max_length=40, choices=catalog.TRIGGER_CHOICES)
    trigger_entity_type = models.CharField(max_length=10)
    trigger_entity_id = models.UUIDField()
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.STARTED)
    metadata = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # Over the plan's monthly quota the run still executes, but its history is not kept: its
    # rows are removed when it finishes and the month's suppressed counter goes up.
    history_suppressed = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=32, blank=True, editable=False)
    wake_at = models.DateTimeField(null=True, blank=True, help_text="When a waiting run goes on.")
    # A sub-workflow's run: the run that started it, and that run's step key (unique: a parent
    # delivered again finds its child instead of starting another).
    # Both indexed only where set (partial indexes below): nearly every run has neither, and an
    # index entry per run would be paid on every dispatch.
    parent_run = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children",
                                   db_index=False)
    parent_key = models.CharField(max_length=100, null=True, blank=True, editable=False)
    # A simulation (simulation.py): its steps show what would happen; nothing happened, and it
    # counts nowhere (workflow counters, quota, success rate).
    simulated = models.BooleanField(default=False, db_default=False, editable=False)
    # A run of a "not while running" workflow holds its record's place until it ends (unique
    # per workflow and record while set; runtime/enrollment.py): no enrollment row to write.
    holds_enrollment = models.BooleanField(default=False, db_default=False, editable=False)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "workflow_runs"
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "workflow"], name="uniq_run_per_event_workflow"),
            models.UniqueConstraint(fields=["workflow", "trigger_entity_id"], name="uniq_run_enrollment",
                                    condition=models.Q(holds_enrollment=True)),
            models.UniqueConstraint(fields=["parent_key"], name="uniq_run_parent_key",
                                    condition=models.Q(parent_key__isnull=False)),
        ]
        indexes = [
            models.Index(fields=["organization", "-started_at", "-id"]),
            # "What went wrong?" lists and the run-history filters: the trouble statuses are a
            # small share of runs, so a partial index answers them without reading the rest, and a
            # run that succeeds never enters it. Trigger types never change after the insert.
            models.Index(fields=["organization", "-started_at", "-id"], name="run_trouble_idx",
                         condition=models.Q(status__in=["failed", "partial", "paused"])),
            models.Index(fields=["organization", "trigger_type", "-started_at", "-id"], name="run_org_trigger_idx"),
            models.Index(fields=["-started_at", "-id"], name="run_recent_idx"),
            models.Index(fields=["workflow", "-started_at"]),
            models.Index(fields=["trigger_entity_id"]),
            models.Index(fields=["started_at"], name="run_unfinished_idx",
                         condition=models.Q(status="started")),
            models.Index(fields=["wake_at"], name="run_waiting_idx", condition=models.Q(status="waiting")),
            models.Index(fields=["parent_run"], name="run_children_idx", condition=models.Q(parent_run__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"Run #{self.pk} ({self.get_status_display().lower()})"

    @property
    def duration_ms(self) -> int | None:
        if self.finished_at is None or self.started_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class WorkflowRunAction(models.Model):
    """One node of a run at one token (loop iteration): the engine's cursor and what users see."""

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="actions")
    node_id = models.CharField(max_length=60, default="", db_default="")
    token = models.CharField(max_length=60, blank=True, default="", db_default="",
                             help_text="Which loop iteration: empty outside loops, 2.0 in nested ones.")
    position = models.PositiveSmallIntegerField(help_text="The order in which the run reached its steps.")
    action_type = models.CharField(max_length=30)
    status = models.CharField(max_length=10, choices=StepStatus.choices, default=StepStatus.PENDING)
    input = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "workflow_run_actions"
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["run", "node_id", "token"], name="uniq_run_node_token")]

    def __str__(self) -> str:
        return f"{self.position}. {self.action_type}: {self.status}"


class FieldChange(models.Model):
    """Audit of a field a workflow changed (old and new value); its key makes it happen once."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    entity_type = models.CharField(max_length=10)
    entity_id = models.UUIDField()
    field = models.CharField(max_length=50)
    old_value = models.JSONField(null=True)
    new_value = models.JSONField(null=True)
    run_id = models.BigIntegerField(null=True)
    automation_key = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.entity_type}.{self.field}: {self.old_value!r} → {self.new_value!r}"


class MonthlyUsage(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    month = models.DateField(help_text="First day of the month.")
    logged_runs = models.PositiveIntegerField(default=0)
    suppressed_runs = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "month"], name="uniq_usage_month")]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.month:%Y-%m}: {self.logged_runs} logged"


class WorkflowSchedule(models.Model):
    """When an activated schedule workflow is due next (schedules.py keeps these in step with
    the workflows: one row per activated schedule workflow, none for the others)."""

    workflow = models.OneToOneField(Workflow, on_delete=models.CASCADE, primary_key=True, related_name="schedule")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.CASCADE, related_name="+")
    expression = models.CharField(max_length=120, help_text="The cron expression the schedule comes to.")
    time_zone = models.CharField(max_length=64)
    next_due_at = models.DateTimeField(db_index=True)
    last_due_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.workflow_id}: {self.expression} ({self.time_zone}), next {self.next_due_at:%Y-%m-%d %H:%M}"


class ScheduleTick(models.Model):
    """A due time that has been fired: unique per workflow, so no due time starts two runs,
    whichever clusters race for it."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    due_at = models.DateTimeField(db_index=True)
    fired_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workflow", "due_at"], name="uniq_schedule_tick")]

    def __str__(self) -> str:
        return f"{self.workflow_id} at {self.due_at:%Y-%m-%d %H:%M}"


class RelativeTrigger(models.Model):
    """Where the relative-time pass of an activated workflow stands (relative_time.py): every
    occasion up to `checked_until` has been fired."""

    workflow = models.OneToOneField(Workflow, on_delete=models.CASCADE, primary_key=True, related_name="+")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.CASCADE, related_name="+")
    trigger_type = models.CharField(max_length=40)
    time_zone = models.CharField(max_length=64)
    checked_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.workflow_id}: {self.trigger_type} checked until {self.checked_until:%Y-%m-%d %H:%M}"


class CircuitBreak(models.Model):
    """The circuit breaker paused a workflow (breaker.py): why, and when it was tried again."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="breaks")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    opened_at = models.DateTimeField()
    reason = models.TextField()
    runs = models.PositiveIntegerField(help_text="Finished runs in the window.")
    failures = models.PositiveIntegerField(help_text="Of which failed.")
    closes_at = models.DateTimeField(help_text="When the workflow is activated again, on trial.")
    closed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True, help_text="What happened at the end of the cool-down.")

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["closes_at"], name="break_open_idx",
                                condition=models.Q(closed_at__isnull=True))]

    def __str__(self) -> str:
        return f"{self.workflow_id} paused at {self.opened_at:%Y-%m-%d %H:%M}: {self.reason}"


class AlertIncident(models.Model):
    """Something the automation noticed about itself (alerting.py): open while it lasts, told
    to the organization's admins once (again if a warning turns critical)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, null=True, blank=True, related_name="incidents")
    kind = models.CharField(max_length=20)  # success_rate, slow, backlog; slow_run, volume, error_rate
    level = models.CharField(max_length=10)  # warning, critical
    detail = models.TextField()
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [models.UniqueConstraint(fields=["organization", "workflow", "kind"], name="uniq_open_incident",
                                               condition=models.Q(closed_at__isnull=True))]

    def __str__(self) -> str:
        return f"{self.level} {self.kind} ({'open' if self.closed_at is None else 'closed'}): {self.detail}"


def _price(help_text: str) -> models.DecimalField:
    return models.DecimalField(max_digits=12, decimal_places=6, default=0, help_text=help_text,
                               validators=[MinValueValidator(0, "must not be negative")])


class UnitPrices(models.Model):
    """What an organization pays per unit of what its workflows use (ops/costs.py prices each
    workflow's month with them). Set by its admins (services/monitoring.py); none set: all 0."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="+")
    email = _price("Per email sent.")
    sms_segment = _price("Per SMS segment sent.")
    ai_1k_tokens = _price("Per 1,000 AI tokens (prompt and answer).")
    webhook_call = _price("Per webhook or HTTP request made (each try).")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "unit prices"

    def __str__(self) -> str:
        return f"Unit prices of {self.organization}"


class AiCallStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Asking the model"
    SUCCEEDED = "succeeded", "Answered"
    FAILED = "failed", "Failed"


class AiCall(models.Model):
    """One question an `agent` or `router` step asks the model, under the step's effect key: made
    queued with the step, asked after the commit (never inside a transaction), the answer, the
    tokens and the cost kept for the step's history and the organization's bill."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    automation_key = models.CharField(max_length=100, unique=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    node_type = models.CharField(max_length=20)  # agent | router | loop (an ask-orchestrator loop's question)
    request = models.JSONField(help_text="What is asked: the system and user prompts, the routes or format.")
    status = models.CharField(max_length=10, choices=AiCallStatus.choices, default=AiCallStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    provider = models.CharField(max_length=200, blank=True)
    answer = models.JSONField(null=True, blank=True, help_text="The output: text, JSON, or the chosen route.")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0, help_text="US dollars, by the set prices.")
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "AI call"
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.node_type} {self.automation_key} ({self.status})"


class ImpactPreview(models.Model):
    """A replay worked out by a worker, too long for a page or an API request to wait for: an
    impact preview (impact.py: the last days' changes through the saved workflow; shown again for
    the same workflow, days and saved revision for a few minutes) or a regression check
    (regression.py: the last runs through the live version and the saved edits; shown again
    while the edits, the live version and the latest run are the same)."""

    class Kind(models.TextChoices):
        IMPACT = "impact", "Impact preview"
        REGRESSION = "regression", "Regression check"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Working"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="impact_previews")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.IMPACT, db_default=Kind.IMPACT)
    days = models.PositiveSmallIntegerField(help_text="The days an impact preview replays; 0 for a regression "
                                                      "check, which replays runs, not days.")
    revision = models.PositiveIntegerField(help_text="The workflow's draft revision the preview replayed.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["workflow", "days", "-created_at"])]
        # One replay in flight per workflow, kind and window: asks that race each other join one row.
        constraints = [models.UniqueConstraint(fields=["workflow", "kind", "days"], name="uniq_replay_in_flight",
                                               condition=models.Q(status__in=["queued", "running"]))]

    def __str__(self) -> str:
        if self.kind == self.Kind.REGRESSION:
            return f"regression check of workflow {self.workflow_id} ({self.status})"
        return f"impact of workflow {self.workflow_id} over {self.days} days ({self.status})"


class BulkHold(models.Model):
    """What one workflow did about one bulk operation (an import, a bulk action) larger than its
    threshold (automation/bulk.py): held its runs for a person to review, or ran once as a
    digest. One row per workflow × operation, however many records the operation changed."""

    class Mode(models.TextChoices):
        HOLD = "hold", "Held for review"
        DIGEST = "digest", "One digest run"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        RELEASED = "released", "Released: runs started"
        DISCARDED = "discarded", "Discarded: no runs"
        DIGESTED = "digested", "Ran once as a digest"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="bulk_holds")
    operation = models.CharField(max_length=36)
    source = models.CharField(max_length=20)
    size = models.PositiveIntegerField(help_text="How many records the operation changed.")
    mode = models.CharField(max_length=10, choices=Mode.choices)
    count = models.PositiveIntegerField(default=0, help_text="Records that matched the workflow.")
    status = models.CharField(max_length=10, choices=Status.choices)
    digest_run = models.ForeignKey("WorkflowRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["workflow", "operation"], name="uniq_bulk_hold")]
        indexes = [models.Index(fields=["organization", "status", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_mode_display()}: {self.count} of {self.size} records ({self.source})"


class WorkerHeartbeat(models.Model):
    """A worker process that was alive recently: its watchdog thread touches its row every
    AUTOMATION_HEARTBEAT_SECONDS, so operators (`automation_status`, /readyz) can tell how many
    workers are running on which hosts without asking the broker (the ORM broker keeps no such
    list). Rows of workers gone for a day are deleted by the heartbeats of the living."""

    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    cluster = models.CharField(max_length=100, help_text="The qcluster's name (Q_CLUSTER_NAME).")
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "pid"], name="uniq_worker_host_pid")]

    def __str__(self) -> str:
        return f"{self.host} pid {self.pid}"


class LifecycleType(models.TextChoices):
    """What other systems hear about (docs/product.md#lifecycle-events)."""

    WORKFLOW_CREATED = "workflow.created", "Workflow created"
    WORKFLOW_UPDATED = "workflow.updated", "Workflow updated"
    WORKFLOW_PUBLISHED = "workflow.published", "Workflow published"
    WORKFLOW_ACTIVATED = "workflow.activated", "Workflow activated"
    WORKFLOW_PAUSED = "workflow.paused", "Workflow paused"
    WORKFLOW_ARCHIVED = "workflow.archived", "Workflow archived"
    WORKFLOW_DELETED = "workflow.deleted", "Workflow deleted"
    RUN_STARTED = "run.started", "Run started"
    RUN_COMPLETED = "run.completed", "Run completed"
    RUN_FAILED = "run.failed", "Run failed"
    RUN_PAUSED = "run.paused", "Run paused"
    RUN_CANCELLED = "run.cancelled", "Run cancelled"
    HIGH_FAILURE_RATE = "workflow.high_failure_rate", "High failure rate"
    BREAKER_OPENED = "workflow.breaker_opened", "Circuit breaker opened"
    BREAKER_CLOSED = "workflow.breaker_closed", "Circuit breaker closed"


class LifecycleEvent(models.Model):
    """One thing that happened to a workflow or a run, written in the transaction that made it
    happen (lifecycle.py), listed by the API with a cursor and delivered to the organization's
    event subscriptions (webhooks/subscriptions.py). The id is the cursor: it only grows."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    type = models.CharField(max_length=40, choices=LifecycleType.choices)
    # Plain ids, not foreign keys: a deleted workflow's events stay, and a run's are written in bulk.
    workflow_id = models.BigIntegerField(null=True, blank=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        # One index: listing and pruning go by id (retention finds the cut-off's id by bisection).
        indexes = [models.Index(fields=["organization", "id"], name="lifecycle_org_idx")]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"


class Rollout(models.Model):
    """A published version released to a share of the records (docs/product.md#gradual-rollout).

    A record is in the share when its bucket (a hash of workflow and record, 0-99) is below
    `percent`, so it stays on one version while the share only grows. The workflow points at its
    rollout while it is active or held; at 100 % the version becomes the workflow's current one."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Rolling out"
        HELD = "held", "Held"
        COMPLETED = "completed", "Completed: every record"
        ABORTED = "aborted", "Called off: back to the previous version"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="rollouts")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="+")
    previous = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="+")
    percent = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # What is left of the schedule: [{"percent": 50, "at": iso}, …]; raised by the watch task.
    steps = models.JSONField(default=list, blank=True)
    margin = models.PositiveSmallIntegerField(default=10, help_text="Held when the new version's failure rate "
                                                                    "exceeds the previous one's by this many points.")
    min_runs = models.PositiveSmallIntegerField(default=10, help_text="Runs of the new version before comparing.")
    held_reason = models.TextField(blank=True)
    log = models.JSONField(default=list, blank=True, help_text="Each change: when, the share, who, why.")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["status"], name="rollout_open_idx",
                                condition=models.Q(status__in=["active", "held"]))]

    def __str__(self) -> str:
        return f"version {self.version_id} at {self.percent} % ({self.status})"
