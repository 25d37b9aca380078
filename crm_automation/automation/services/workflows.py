"""Writes to workflows: create, change the definition (a new version), status transitions.

The one write path (invariant 12): the admin, the pages, the API, YAML import and AI authoring
call these and nothing else. Each checks the caller's role, validates the whole definition and
writes only what it was asked to change. `by=None` means the system itself (a management
command, a data migration); every surface a person uses passes the person.
"""

from types import SimpleNamespace

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, Value
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.text import slugify

from crm_automation.automation import lifecycle, plans, wording
from crm_automation.automation.definition import cycles, documents
from crm_automation.automation.definition.validation import (
    DEFINITION_FIELDS,
    activation_problems,
    raise_if_invalid,
    validate_definition,
)
from crm_automation.automation.models import (
    AutomationEvent,
    LifecycleType,
    Rollout,
    Workflow,
    WorkflowRun,
    WorkflowStatus,
    WorkflowVersion,
)
from crm_automation.automation.runtime import enrollment
from crm_automation.automation.services import rollouts
from crm_automation.crm.concurrency import conflicts
from crm_automation.crm.models import Organization
from crm_automation.crm.selectors import shown, user_has_role
from crm_automation.refusals import Refused, StaleEdit

EDITABLE_FIELDS = ("name", "description", *DEFINITION_FIELDS)
# What a change of the draft writes: its document and the columns read from it.
DRAFT_COLUMNS = ("document", "key", "name", "description", "trigger_type")


def editable_values(workflow: Workflow) -> dict:
    """The fields `workflow_update` changes (EDITABLE_FIELDS), as the draft has them now."""
    draft = workflow.definition
    return {"name": workflow.name, "description": workflow.description,
            **{field: draft.get(field, {}) for field in DEFINITION_FIELDS}}  # (a chain has no graph: {})


def _with_ids(actions):
    """The actions, each with its stable node id (documents.with_node_ids); as they are when
    they are not a list of objects (validation says what is wrong)."""
    if isinstance(actions, list) and all(isinstance(action, dict) for action in actions):
        return documents.with_node_ids(actions)
    return actions


def _write_draft(workflow: Workflow, definition: dict, *, name: str, description: str) -> None:
    """The draft as a document, in the form export writes (the one stored shape); not saved."""
    workflow.take_document(documents.document_of(key=workflow.key, name=name, description=description or "",
                                                 definition=definition))


MAX_NAME = wording.limit_of(Workflow, "name")


def name_holder(organization_id: int, name: str, *, exclude: int | None = None) -> Workflow | None:
    """The workflow of the organization already called `name`, whatever the case (the same
    LOWER() as the database constraint `uniq_workflow_name_ci`, so both agree), or None."""
    return (Workflow.objects.filter(organization_id=organization_id).annotate(folded=Lower("name"))
            .filter(folded=Lower(Value(name))).exclude(Q(pk=exclude)).first())  # (None: excludes none)


def free_name(organization_id: int, wanted: str, *, exclude: int | None = None) -> str:
    """`wanted`, or “wanted (2)”, “(3)” … when another workflow of the organization has that
    name (whatever its case); shortened at a word, with an ellipsis, to fit MAX_NAME."""
    wanted = " ".join(wanted.split()) or "Workflow"
    name, n = wording.shorten(wanted, MAX_NAME), 2
    while name_holder(organization_id, name, exclude=exclude) is not None:
        suffix = f" ({n})"
        name, n = wording.shorten(wanted, MAX_NAME - len(suffix)) + suffix, n + 1
    return name


def name_problems(organization_id: int, name, *, exclude: int | None = None,
                  place: str = "name") -> list[tuple[str, str]]:
    """What is wrong with `name` for a workflow of this organization: empty, too long, or the
    name of another one (archived ones too: their runs still show it). `exclude`: the workflow
    being renamed."""
    if not isinstance(name, str) or not name.strip():
        return [(place, "a workflow needs a name")]
    name = name.strip()
    if "\x00" in name:
        return [(place, "may not contain a NUL character")]
    if len(name) > MAX_NAME:
        return [(place, f"is {len(name):,} characters long; a name has at most {MAX_NAME} (nothing was cut: "
                        "shorten it)")]
    holder = name_holder(organization_id, name, exclude=exclude)
    if holder is None:
        return []
    what = "an archived workflow" if holder.status == WorkflowStatus.ARCHIVED else "another workflow"
    same = "" if holder.name == name else f" (as “{holder.name}”: names are unique whatever their case)"
    return [(place, f"{what} of this organization is already called that{same}; choose another name, e.g. "
                    f"“{free_name(organization_id, name, exclude=exclude)}”")]


def _save_named(workflow: Workflow, **kwargs) -> None:
    """Save in a savepoint, so a name taken by a concurrent save (both passed the check) is a
    refusal at the name field, decided by the database constraint, and the caller's
    transaction stays usable."""
    try:
        with transaction.atomic():
            workflow.save(**kwargs)
    except IntegrityError:
        problems = name_problems(workflow.organization_id, workflow.name, exclude=workflow.pk)
        if not problems:
            raise
        raise ValidationError({"name": [message for _, message in problems]}) from None


def _free_key(organization_id: int, wanted: str, exclude: int | None = None) -> str:
    """`wanted` as a kebab-case key, with -2, -3 … if another workflow of the organization has it."""
    base = slugify(wanted)[:70].strip("-") or "workflow"
    taken = set(Workflow.objects.filter(organization_id=organization_id, key__startswith=base)
                .exclude(Q(pk=exclude)).values_list("key", flat=True))  # (None: excludes none)
    key, n = base, 2
    while key in taken:
        key, n = f"{base}-{n}", n + 1
    return key


def workflow_snapshot(*, workflow: Workflow, by=None) -> WorkflowVersion:
    """Make the saved definition the live one, as a new immutable version (unless unchanged).
    New triggers use it; runs in flight finish on the version they started with."""
    definition = workflow.definition
    latest = workflow.versions.order_by("-number").first()
    if latest is not None and latest.definition == definition:
        if workflow.current_version_id != latest.pk:
            Workflow.objects.filter(pk=workflow.pk).update(version=latest.number, current_version=latest)
            workflow.version, workflow.current_version = latest.number, latest
        return latest
    number = (latest.number if latest else 0) + 1
    version = WorkflowVersion.objects.create(workflow=workflow, number=number, document=workflow.document,
                                             created_by=by)
    Workflow.objects.filter(pk=workflow.pk).update(version=number, current_version=version)
    workflow.version, workflow.current_version = number, version
    before = latest.definition.get("reenrollment", Workflow.Reenrollment.EVERY_TIME) if latest else None
    if before is not None and definition["reenrollment"] != before:
        enrollment.adopt_policy(workflow_id=workflow.pk, policy=definition["reenrollment"])
    return version


def is_live(workflow: Workflow) -> bool:
    """Activated or paused: edits are a draft until published."""
    return workflow.status in (WorkflowStatus.ACTIVATED, WorkflowStatus.PAUSED)


def published_version(workflow: Workflow) -> WorkflowVersion | None:
    """The newest published version: the one rolling out, or the current one."""
    if workflow.rollout_id is not None and workflow.rollout is not None:
        return workflow.rollout.version
    return workflow.current_version


def has_unpublished_changes(workflow: Workflow) -> bool:
    published = published_version(workflow)
    return is_live(workflow) and published is not None and workflow.definition != published.definition


def can_edit(user, workflow: Workflow) -> bool:
    """Org admins edit any workflow that is not archived; ops edit drafts; viewers read."""
    if user is None:
        return workflow.status != WorkflowStatus.ARCHIVED
    if workflow.status == WorkflowStatus.ARCHIVED:
        return False
    if workflow.status == WorkflowStatus.DRAFT:
        return user_has_role(user, workflow.organization_id, "ops")
    return user_has_role(user, workflow.organization_id, "admin")


def check_edit(by, workflow: Workflow) -> None:
    """Refuse (PermissionDenied, or Refused when archived) a change `by` may not make;
    surfaces call it before they read a body, so a reader cannot make them parse one."""
    if workflow.status == WorkflowStatus.ARCHIVED:
        raise Refused(f"“{workflow.name}” is archived and cannot be changed; clone it instead.")
    if not can_edit(by, workflow):
        if user_has_role(by, workflow.organization_id, "ops"):
            raise PermissionDenied(f"Only admins of this organization can change a workflow that is "
                                   f"{workflow.get_status_display().lower()}; ops members edit drafts.")
        raise PermissionDenied("You can read this workflow but not change it.")


def _validate(workflow: Workflow, name, definition: dict, *, check_name: bool = True) -> None:
    """Every problem at once: the name (`check_name`: it is new or changed), then the whole
    definition, so one save reports all there is to fix."""
    errors = []
    if check_name:
        errors += name_problems(workflow.organization_id, name, exclude=workflow.pk)
    errors += validate_definition(definition, workflow.organization_id)
    if workflow.status == WorkflowStatus.ACTIVATED and not definition.get("actions"):
        errors.append(("actions", "an activated workflow needs at least one action; pause it first"))
    raise_if_invalid(errors)


@transaction.atomic
def workflow_create(*, organization: Organization, name: str, trigger_type: str, actions: list[dict],
                    by=None, trigger_config: dict | None = None, conditions: dict | None = None,
                    error_handling: str = Workflow.ErrorHandling.STOP,
                    reenrollment: str = Workflow.Reenrollment.NOT_WHILE_RUNNING,
                    timeout_seconds: int = 60, description: str = "", key: str = "",
                    graph: dict | None = None) -> Workflow:
    """A new draft with its first version. Ops members and admins of the organization may.
    `key` (the YAML id) defaults to the name; a taken one gets a -2, -3 … suffix."""
    if by is not None and not user_has_role(by, organization.pk, "ops"):
        raise PermissionDenied(f"Only ops members and admins of {organization.name} can create workflows.")
    name = name.strip() if isinstance(name, str) else name
    definition = {"trigger_type": trigger_type, "trigger_config": trigger_config or {},
                  "conditions": conditions or {}, "error_handling": error_handling, "reenrollment": reenrollment,
                  "timeout_seconds": timeout_seconds, "actions": actions}
    if graph:
        definition["graph"] = graph
    workflow = Workflow(organization=organization, created_by=by)
    _validate(workflow, name, definition)
    workflow.key = _free_key(organization.pk, key or name)
    _write_draft(workflow, {**definition, "actions": _with_ids(actions)}, name=name, description=description)
    _save_named(workflow)
    workflow_snapshot(workflow=workflow, by=by)
    lifecycle.workflow_event(LifecycleType.WORKFLOW_CREATED, workflow, by)
    return workflow


@transaction.atomic
def workflow_update(*, workflow_id: int, by=None, changes: dict | None = None, actions: list[dict] | None = None,
                    expected: dict | None = None, expected_revision: int | None = None) -> Workflow:
    """Change a workflow: only the fields in `changes` (and the actions, if given) are written,
    under a row lock; counters and status are never touched here. A draft's change becomes a
    new version at once; a live (activated or paused) workflow's change waits for
    `workflow_publish`, so a half-finished edit never runs.

    Lost updates are refused, not made: `expected` holds, for each changed field, the value the
    caller saw when it started (a form's initial value); if someone changed it since, nothing
    is written (StaleEdit). `expected_revision` does the same for the actions.
    """
    changes = dict(changes or {})
    workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow_id)
    check_edit(by, workflow)
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if "organization" in unknown or "organization_id" in unknown:
        raise ValidationError({"organization": "A workflow stays in the organization it was created in; "
                                               "clone it into the other organization instead."})
    if unknown:
        raise ValidationError(f"These fields cannot be changed here: {', '.join(sorted(unknown))}.")
    found = conflicts(SimpleNamespace(**editable_values(workflow)), expected, changes)
    if actions is not None and expected_revision is not None and workflow.draft_revision != expected_revision:
        found["actions"] = STALE_ACTIONS
    if found:
        raise stale(workflow, found)
    if isinstance(changes.get("name"), str):
        changes["name"] = changes["name"].strip()
    name, description = changes.get("name", workflow.name), changes.get("description", workflow.description)
    draft = workflow.definition
    definition = {**draft, **{field: value for field, value in changes.items() if field in DEFINITION_FIELDS}}
    if actions is not None:
        definition["actions"] = _with_ids(actions)
    _validate(workflow, name, definition, check_name="name" in changes and name != workflow.name)
    if changes or definition["actions"] != draft["actions"]:
        workflow.draft_revision += 1
        workflow.edited_by, workflow.edited_at = by, timezone.now()
        _write_draft(workflow, definition, name=name, description=description)
        _save_named(workflow, update_fields=[*DRAFT_COLUMNS, "draft_revision", "edited_by", "edited_at", "updated_at"])
        if not is_live(workflow):
            workflow_snapshot(workflow=workflow, by=by)
        lifecycle.workflow_event(LifecycleType.WORKFLOW_UPDATED, workflow, by, revision=workflow.draft_revision,
                                 changed=sorted({*changes, *(["actions"] if actions is not None else [])}))
    elif not is_live(workflow):
        workflow_snapshot(workflow=workflow, by=by)
    return workflow


STALE_ACTIONS = ("Someone else saved changes to this workflow since you opened it, so your changes to "
                 "the actions were not saved. Reload the page and make them again.")
STALE_DOCUMENT = ("Someone else saved changes to this workflow since you opened it, so your changes were not "
                  "saved. Reload the page and make them again.")


def stale(workflow: Workflow, found: dict[str, str] | None = None) -> StaleEdit:
    """The refusal of an edit made from an older revision of `workflow` (as read now): `found`
    names the fields changed meanwhile, without it the whole document is stale."""
    revision, saved_by = workflow.draft_revision, workflow.edited_by
    saved_at = workflow.edited_at or workflow.updated_at
    if found:
        return StaleEdit.of_fields(found, revision=revision, saved_by=saved_by, saved_at=saved_at)
    return StaleEdit(STALE_DOCUMENT, revision=revision, saved_by=saved_by, saved_at=saved_at)


@transaction.atomic
def workflow_publish(*, workflow_id: int, by, acknowledge_cycle: bool = False, share: int = 100,
                     steps: list | None = None, margin: int | None = None) -> Workflow:
    """Make a live workflow's saved edits the version new triggers run. Org admins may.
    A cycle with other workflows is refused (cycles.py); a guarded one only if not acknowledged.
    With `share` below 100 the version rolls out to that share of the records first (rollouts.py;
    `steps` raises it on a schedule, `margin` is when it is held); 100 ends any rollout."""
    workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow_id)
    if by is not None and not user_has_role(by, workflow.organization_id, "admin"):
        raise PermissionDenied("Only admins of this organization can publish workflows.")
    if not is_live(workflow):
        raise Refused(f"“{workflow.name}” is {workflow.get_status_display().lower()}: "
                      + ("activate it to make it live." if workflow.status == WorkflowStatus.DRAFT
                         else "archived workflows do not run; clone it to use it again."))
    problems = activation_problems(workflow.definition, workflow.organization_id)
    circle = cycles.refusal(workflow, workflow.definition, acknowledge_cycle) if not problems else None
    if circle:
        problems.append(circle)
    if problems:
        raise Refused(f"Cannot publish “{workflow.name}”: " + "; ".join(problems) + ".")
    previous = workflow.current_version
    if share != 100:
        published = published_version(workflow)
        if previous is None or published is None or published.definition == workflow.definition:
            raise Refused(f"“{workflow.name}” has no unpublished changes to roll out.")
    version = workflow_snapshot(workflow=workflow, by=by)
    if share != 100:
        assert previous is not None
        started = rollouts.start(workflow=workflow, version=version, previous=previous, by=by, share=share,
                                 steps=steps, margin=margin)
        lifecycle.workflow_event(LifecycleType.WORKFLOW_PUBLISHED, workflow, by, rollout={
            "version": version.number, "percent": started.percent, "steps": started.steps})
        return workflow
    rolling = workflow.rollout if workflow.rollout_id else None
    if rolling is not None:
        done = Rollout.Status.COMPLETED if rolling.version_id == version.pk else Rollout.Status.ABORTED
        rollouts.close_open(workflow, by, done, f"version {version.number} published to every record")
    lifecycle.workflow_event(LifecycleType.WORKFLOW_PUBLISHED, workflow, by)
    return workflow


TRANSITIONS = ("activate", "pause", "archive")
_REFUSED = {
    ("pause", WorkflowStatus.DRAFT): "a draft cannot be paused; activate it first",
    ("pause", WorkflowStatus.PAUSED): "it is already paused",
    ("pause", WorkflowStatus.ARCHIVED): "archived workflows cannot be paused",
    ("activate", WorkflowStatus.ACTIVATED): "it is already activated",
    ("activate", WorkflowStatus.ARCHIVED): "archived workflows cannot be activated; clone it to use it again",
    ("archive", WorkflowStatus.ARCHIVED): "it is already archived",
}


@transaction.atomic
def workflow_transition(*, workflow_id: int, name: str, by, acknowledge_cycle: bool = False) -> Workflow:
    """Apply a status transition after checking who asks and why it may not happen.

    The organization row is locked first, so two concurrent activations cannot both pass the
    plan's limit, and the workflow row is re-read under the lock, so a stale page cannot apply
    a transition from a state the workflow has already left.

    Both locks are FOR NO KEY UPDATE, as every lock on these rows is except a delete's: a drain
    inserts rows that reference them, and PostgreSQL checks those (deferred) foreign keys at
    commit with a KEY SHARE lock, which FOR UPDATE blocks. A drain holding the workflow's
    counters and waiting at commit on the organization, while this waits on the workflow,
    was a deadlock (an admin's Pause answered 500).
    """
    if name not in TRANSITIONS:
        raise ValidationError(f"Unknown transition {shown(name)}; use one of {', '.join(TRANSITIONS)}.")
    organization_id = Workflow.objects.values_list("organization_id", flat=True).get(pk=workflow_id)
    organization = Organization.objects.select_for_update(no_key=True).get(pk=organization_id)
    workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow_id)
    if by is not None and not user_has_role(by, organization.pk, "admin"):
        raise PermissionDenied(f"Only admins of {organization.name} can {name} workflows.")
    refused = _REFUSED.get((name, workflow.status))
    if refused:
        raise Refused(f"Cannot {name} “{workflow.name}”: {refused}.")
    if name == "activate":
        problems = []
        if not plans.includes_automation(organization.plan):
            problems.append(f"the {organization.get_plan_display()} plan does not include automation")
        limit = plans.ACTIVE_WORKFLOW_LIMIT.get(organization.plan)
        if limit:
            active = Workflow.objects.filter(organization=organization, status=WorkflowStatus.ACTIVATED).count()
            if active >= limit:
                problems.append(f"the {organization.get_plan_display()} plan allows {limit} activated "
                                f"workflows and {active} already are; pause one first")
        if workflow.status == WorkflowStatus.DRAFT or workflow.current_version is None:
            workflow_snapshot(workflow=workflow, by=by)  # going live for the first time
        version = workflow.current_version
        assert version is not None, "a snapshot was taken"
        problems += activation_problems(version.definition, organization.pk)
        circle = cycles.refusal(workflow, version.definition, acknowledge_cycle) if not problems else None
        if circle:
            problems.append(circle)
        if problems:
            raise Refused(f"Cannot activate “{workflow.name}”: " + "; ".join(problems) + ".")
    getattr(workflow, name)()
    workflow.save(update_fields=["status", "updated_at"])
    if name == "archive":
        rollouts.close_open(workflow, by, Rollout.Status.ABORTED, "the workflow was archived")
    lifecycle.workflow_event(lifecycle.VERB_TYPES[name], workflow, by)
    return workflow


@transaction.atomic
def workflow_delete(*, workflow_id: int, by) -> None:
    """Delete a draft that never ran. Ops members and admins of the organization may.

    Anything that went live keeps its history: archive it instead. A draft has no runs but its
    simulations (run-test), which go with it; a draft another workflow starts as a sub-workflow
    stays, so that workflow does not fail later on a missing child.
    """
    workflow = Workflow.objects.select_for_update().get(pk=workflow_id)
    if by is not None and not user_has_role(by, workflow.organization_id, "ops"):
        raise PermissionDenied("Only ops members and admins of this organization can delete workflows.")
    if workflow.status != WorkflowStatus.DRAFT:
        raise Refused(f"“{workflow.name}” is {workflow.get_status_display().lower()}: only drafts are "
                      "deleted; archive it instead (its runs and versions are kept).")
    runs = WorkflowRun.objects.filter(workflow=workflow)
    if runs.filter(simulated=False).exists():
        raise Refused(f"“{workflow.name}” has runs: archive it instead.")
    callers = sorted(other.name for other in Workflow.objects.filter(organization_id=workflow.organization_id)
                     .exclude(pk=workflow.pk) if _starts(other.definition, workflow.key))
    if callers:
        raise Refused(f"“{workflow.name}” is started as a sub-workflow by {', '.join(callers)}; "
                      "change those first.")
    # Simulated runs hold their own events (and versions, protected); the current version is
    # protected by the workflow's own pointer to it.
    AutomationEvent.objects.filter(pk__in=list(runs.values_list("event_id", flat=True))).delete()
    lifecycle.workflow_event(LifecycleType.WORKFLOW_DELETED, workflow, by)
    Workflow.objects.filter(pk=workflow.pk).update(current_version=None)
    workflow.delete()


@transaction.atomic
def workflow_allow_deletion(*, workflow_id: int, by, allowed: bool) -> Workflow:
    """Allow (or stop allowing) the workflow's "Delete a record" steps to delete records. Only
    admins of its organization may: a deleted record is gone, so an ops member's draft cannot
    grant itself that."""
    workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow_id)
    if by is not None and not user_has_role(by, workflow.organization_id, "admin"):
        raise PermissionDenied("Only admins of this organization can allow a workflow to delete records.")
    if workflow.allows_deletion != bool(allowed):
        workflow.allows_deletion = bool(allowed)
        workflow.save(update_fields=["allows_deletion", "updated_at"])
    return workflow


def _starts(definition: dict, key: str) -> bool:
    """Whether a definition starts the workflow `key` as a sub-workflow."""
    return any(action.get("type") == "sub_workflow" and (action.get("config") or {}).get("workflowId") == key
               for action in definition.get("actions") or [])
