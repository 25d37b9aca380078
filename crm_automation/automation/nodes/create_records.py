"""Steps that create a record linked to the run's record (a project from this deal, a contact,
a deal, a note) or delete one.

Each created record carries the step's key in its own unique `automation_key` column, committed
with the step: a redelivered run finds it (`existing`) instead of creating a second one. Records
are saved one by one inside `caused_by`, so what their saves announce (project_created …) starts
other workflows with the loop guard's depth, as a stage move by update_field does.

A deletion is made only when an admin allowed the workflow to delete records
(Workflow.allows_deletion); the step keeps what it deleted (its result, and a FieldChange row
under the step's key, which is what makes it happen once).
"""

from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from crm_automation.automation.models import FieldChange, WorkflowRun
from crm_automation.automation.nodes.base import Action, ActionFailed, ExecutionContext, Result
from crm_automation.automation.nodes.create_task import linked_deal
from crm_automation.automation.runtime.cause import caused_by
from crm_automation.crm import changes
from crm_automation.crm.models import Contact, Deal, Lead, Membership, Note, Project, Stage
from crm_automation.crm.services import record_delete
from crm_automation.crm.snapshots import snapshot

OWNER = "owner"


def _member(config: dict[str, Any], ctx: ExecutionContext, name: str = "owner") -> Any:
    """A member named in the config ("owner": the run's record's owner), or None."""
    wanted = config.get(name)
    if not wanted:
        return None
    if wanted == OWNER:
        return getattr(ctx.record, "owner", None)
    user = get_user_model().objects.filter(username=wanted, memberships__organization_id=ctx.organization_id).first()
    if user is None:
        raise ActionFailed(f"{name} “{wanted}” is no longer a member of this organization")
    return user


def _member_problems(config: dict[str, Any], organization_id: int, name: str = "owner") -> list[tuple[str, str]]:
    wanted = config.get(name)
    if wanted in (None, "", OWNER):
        return []
    if not isinstance(wanted, str) or not Membership.objects.filter(organization_id=organization_id,
                                                                    user__username=wanted).exists():
        return [(f"config.{name}", f"“{wanted}” is not a member of this organization (or use “owner”)")]
    return []


def run_contact(ctx: ExecutionContext) -> Contact | None:
    """The contact the run is about: its record's, or the one its event names or carries."""
    record: object = ctx.record
    contact_id: object = None
    if isinstance(record, Deal | Project):
        contact_id = record.contact_id
    elif isinstance(record, Lead):
        contact_id = record.converted_contact_id
    if contact_id is None:
        carried = ctx.template_context.get("contact")
        contact_id = carried.get("id") if isinstance(carried, dict) else None
    text = str(contact_id) if contact_id is not None else ""
    if not (text.isascii() and text.isdigit()):
        return None
    return Contact.objects.filter(organization_id=ctx.organization_id, pk=int(text)).first()


def _days(config: dict[str, Any], name: str) -> list[tuple[str, str]]:
    value = config.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 3650):
        return [(f"config.{name}", "must be a whole number of days from 0 to 3650")]
    return []


def _in_days(config: dict[str, Any], name: str) -> Any:
    value = config.get(name)
    return None if value is None else timezone.localdate() + timedelta(days=value)


class CreateRecord(Action[Any]):
    """What the create steps share: a model with an `automation_key`, saved one by one."""

    model: Any = None
    shown = "name"

    def made(self, record: Any) -> Result:
        return {f"{self.model._meta.model_name}_id": str(record.pk), self.shown: getattr(record, self.shown)}

    def checked(self, record: Any) -> None:
        """The model's own checks (links in the organization, own fields, formats): a step's
        record is as valid as one a person saves."""
        try:
            record.full_clean(exclude=["automation_key"])
        except ValidationError as exc:
            problems = [f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()] if hasattr(exc, "error_dict") \
                else exc.messages
            raise ActionFailed(f"the new {self.model._meta.verbose_name} is not valid: {'; '.join(problems)}") \
                from None

    def apply(self, items: list[tuple[ExecutionContext, Any]]) -> list[Result]:
        results = []
        for ctx, record in items:
            with caused_by(ctx.run_id, ctx.depth), transaction.atomic():
                record.save()
                results.append(self.made(record))
        return results

    def existing(self, keys: list[str]) -> dict[str, Result]:
        return {r.automation_key: {**self.made(r), "repeated_delivery": True}
                for r in self.model.objects.filter(automation_key__in=keys)}


class CreateProject(CreateRecord):
    type = "create_project"
    label = "Create project"
    model = Project
    required = ("name",)
    optional = ("service_type", "status", "owner", "starts_in_days", "ends_in_days")
    templated = ("name", "service_type")

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict):
            return errors
        if config.get("status") not in (None, "", *Project.Status.values):
            errors.append(("config.status", f"must be one of {', '.join(Project.Status.values)}"))
        return errors + _member_problems(config, organization_id) + _days(config, "starts_in_days") + _days(
            config, "ends_in_days")

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> Project:
        name = ctx.render("name", config["name"]).strip()
        if not name:
            raise ActionFailed("the project's name rendered empty")
        deal = ctx.record.deal if isinstance(ctx.record, Project) else linked_deal(ctx.record)
        project = Project(organization_id=ctx.organization_id, name=name[:200],
                          service_type=ctx.render("service_type", config.get("service_type") or "")[:100],
                          status=config.get("status") or Project.Status.PLANNED, deal=deal,
                          contact=(deal.contact if deal is not None and deal.contact_id else run_contact(ctx)),
                          owner=_member(config, ctx) or getattr(deal, "owner", None),
                          start_date=_in_days(config, "starts_in_days"), end_date=_in_days(config, "ends_in_days"),
                          automation_key=ctx.key)
        self.checked(project)
        return project


class CreateContact(CreateRecord):
    type = "create_contact"
    label = "Create contact"
    model = Contact
    shown = "first_name"
    required = ("first_name",)
    optional = ("last_name", "email", "phone", "company")
    templated = ("first_name", "last_name", "email", "phone", "company")

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> Contact:
        values = {name: ctx.render(name, config.get(name) or "").strip() for name in self.templated}
        if not values["first_name"]:
            raise ActionFailed("the contact's first name rendered empty")
        contact = Contact(organization_id=ctx.organization_id, automation_key=ctx.key,
                          source_lead=ctx.record if isinstance(ctx.record, Lead) else None, **values)
        self.checked(contact)
        return contact

    def apply(self, items: list[tuple[ExecutionContext, Any]]) -> list[Result]:
        """A deal or project without a contact gets the new one (it is linked to the record)."""
        results = super().apply(items)
        for (ctx, contact), result in zip(items, results, strict=True):
            record = ctx.record
            if isinstance(record, Deal | Project):
                model = type(record)
                with caused_by(ctx.run_id, ctx.depth):
                    row = (model.objects.select_for_update(no_key=True)
                           .filter(pk=record.pk, contact__isnull=True).first())
                    if row is not None:
                        row.contact = contact
                        row.save(update_fields=["contact"])
                        result["linked_to"] = f"{model._meta.model_name}:{record.pk}"
        return results


class CreateDeal(CreateRecord):
    type = "create_deal"
    label = "Create deal"
    model = Deal
    shown = "title"
    required = ("title",)
    optional = ("amount", "stage", "owner")
    templated = ("title", "amount")

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict):
            return errors
        stage = config.get("stage")
        if stage not in (None, "") and not Stage.objects.filter(organization_id=organization_id, slug=stage).exists():
            errors.append(("config.stage", f"“{stage}” is not a stage of this organization"))
        return errors + _member_problems(config, organization_id)

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> Deal:
        title = ctx.render("title", config["title"]).strip()
        if not title:
            raise ActionFailed("the deal's title rendered empty")
        amount_text = ctx.render("amount", str(config.get("amount") or "0")).strip() or "0"
        try:
            amount = Decimal(amount_text.replace(",", ""))
        except InvalidOperation:
            raise ActionFailed(f"amount “{amount_text[:40]}” is not a number") from None
        stages = Stage.objects.filter(organization_id=ctx.organization_id)
        stage = stages.filter(slug=config["stage"]).first() if config.get("stage") else \
            stages.filter(is_won=False, is_lost=False).order_by("order").first()
        if stage is None:
            raise ActionFailed("the organization has no such stage (or no open stage) for the new deal")
        deal = Deal(organization_id=ctx.organization_id, title=title[:200], amount=amount, stage=stage,
                    contact=run_contact(ctx), owner=_member(config, ctx), automation_key=ctx.key,
                    source_lead=ctx.record if isinstance(ctx.record, Lead) else None)
        self.checked(deal)
        return deal


class CreateNote(CreateRecord):
    type = "create_note"
    label = "Add a note"
    model = Note
    shown = "body"
    required = ("body",)
    templated = ("body",)

    def made(self, record: Any) -> Result:
        return {"note_id": record.pk, "body": record.body[:200]}

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> Note:
        body = ctx.render("body", config["body"]).strip()
        if not body:
            raise ActionFailed("the note rendered empty")
        record = ctx.record
        note = Note(organization_id=ctx.organization_id, body=body[:10000], automation_key=ctx.key,
                    deal=record if isinstance(record, Deal) else None,
                    lead=record if isinstance(record, Lead) else None,
                    project=record if isinstance(record, Project) else None)
        if record is None:
            note.contact = run_contact(ctx)
            if note.contact is None:
                raise ActionFailed("there is no record to write the note on (no deal, lead, project or contact)")
        self.checked(note)
        return note


DELETABLE = ("deal", "lead", "contact", "project")


def _target(config: dict[str, Any], ctx: ExecutionContext) -> tuple[str, Any]:
    """(kind, record) a step names with `record` (default: the run's own record, else its contact)."""
    wanted = config.get("record") or ""
    record = ctx.record
    if wanted == "contact" or (not wanted and record is None):
        return "contact", run_contact(ctx)
    if wanted == "deal":
        return "deal", record.deal if isinstance(record, Project) else linked_deal(record)
    if wanted:
        return wanted, record if type(record).__name__.lower() == wanted else None
    return type(record).__name__.lower(), record


class RecordStep(Action[Any]):
    """A step on one record: the run's own (default) or its deal, contact, project or lead."""

    optional = ("record",)

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        if config in (None, {}):
            return []
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if isinstance(config, dict) and config.get("record") not in (None, "", *DELETABLE):
            errors.append(("config.record", f"must be one of {', '.join(DELETABLE)} (default: the run's record)"))
        return errors

    verb = ""  # what the step does to the record, for its refusal

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> tuple[str, Any]:
        entity, target = _target(config, ctx)
        if target is None:
            raise ActionFailed(f"there is no {entity or 'record'} to {self.verb}")
        return entity, target

    @staticmethod
    def keep(ctx: ExecutionContext, entity: str, target: Any, field: str, old: Any, new: Any) -> None:
        """The step's key on a FieldChange row, with what it did: it happens once."""
        entity_id = target.pk if entity != "contact" else changes.stand_in("contact", target.pk)
        FieldChange.objects.create(organization_id=ctx.organization_id, entity_type=entity, entity_id=entity_id,
                                   field=field, old_value=old, new_value=new, run_id=ctx.run_id,
                                   automation_key=ctx.key)


class ArchiveRecord(RecordStep):
    """Archive the run's record (or its deal, contact, project): kept with its history, out of
    the way; its save announces the change (archived_at) like any other. The step's key is kept
    on a FieldChange row, so it happens once."""

    type = "archive_record"
    label = "Archive a record"
    verb = "archive"

    def apply(self, items: list[tuple[ExecutionContext, Any]]) -> list[Result]:
        results = []
        for ctx, (entity, target) in items:
            with caused_by(ctx.run_id, ctx.depth), transaction.atomic():
                row = type(target).objects.select_for_update(no_key=True).get(pk=target.pk)
                already = row.archived_at is not None
                if not already:
                    row.archived_at = timezone.now()
                    row.save(update_fields=["archived_at"])
                self.keep(ctx, entity, target, "archived_at", None, row.archived_at.isoformat())
            results.append({"archived": entity, "id": str(target.pk), "already": already})
        return results

    def existing(self, keys: list[str]) -> dict[str, Result]:
        return {c.automation_key: {"archived": c.entity_type, "repeated_delivery": True}
                for c in FieldChange.objects.filter(automation_key__in=keys, field="archived_at")}


class DeleteRecord(RecordStep):
    type = "delete_record"
    label = "Delete a record"
    verb = "delete"

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> tuple[str, Any]:
        allowed = WorkflowRun.objects.filter(pk=ctx.run_id).values_list("workflow__allows_deletion", flat=True).first()
        if not allowed and not ctx.simulating:
            raise ActionFailed("this workflow may not delete records: an admin has to allow it first (the "
                               "workflow's “Allow deleting records”); nothing was deleted")
        return super().prepare(config, ctx)

    def apply(self, items: list[tuple[ExecutionContext, Any]]) -> list[Result]:
        results = []
        for ctx, (entity, target) in items:
            kept = snapshot(entity, target)
            with caused_by(ctx.run_id, ctx.depth), transaction.atomic():
                record_delete(record=target, by=None)
                self.keep(ctx, entity, target, "deleted", kept, None)
            results.append({"deleted": entity, "id": str(target.pk), "record": kept})
        return results

    def existing(self, keys: list[str]) -> dict[str, Result]:
        return {c.automation_key: {"deleted": c.entity_type, "record": c.old_value, "repeated_delivery": True}
                for c in FieldChange.objects.filter(automation_key__in=keys, field="deleted")}
