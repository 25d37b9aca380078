"""Writes to CRM records. Each service is one transaction and fires the automation triggers."""

import logging
from contextlib import nullcontext
from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connections, router, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from crm_automation.bulk_insert import BULK_BATCH, bulk_insert, server_bound_cursor
from crm_automation.crm import changes, sources
from crm_automation.crm.concurrency import conflicts
from crm_automation.crm.models import (
    Contact,
    Deal,
    Lead,
    Notification,
    Stage,
    deal_stage_change,
    lead_converted_change,
)
from crm_automation.crm.selectors import user_has_role
from crm_automation.refusals import Refused, StaleEdit

logger = logging.getLogger(__name__)


@transaction.atomic
def deal_move_to_stage(*, deal: Deal, stage: Stage) -> Deal:
    """Move a deal to another stage of its organization; fires `deal_stage_change` exactly once
    per real change, with the true from-stage, however many callers move it at once.

    One conditional UPDATE ("where the stage is still the one I loaded") decides it under the
    row lock the UPDATE takes; only if someone moved the deal meanwhile is the row read again.
    On PostgreSQL that UPDATE also writes the change's event (`_move_and_announce`)."""
    if stage.organization_id != deal.organization_id:
        raise ValidationError({"stage": "That stage belongs to another organization."})
    now = timezone.now()
    seen = getattr(deal, "_loaded_stage_id", deal.stage_id)
    moved = seen != stage.pk and _move_and_announce(deal, seen, stage, now)
    if not moved:
        current = (Deal.objects.select_for_update(no_key=True).filter(pk=deal.pk)
                   .values_list("stage_id", flat=True).first())
        if current is None:
            raise ValidationError({"deal": "This deal no longer exists."})
        if current == stage.pk:  # already there (someone else moved it): nothing happened
            deal.stage, deal._loaded_stage_id = stage, stage.pk
            return deal
        _move_and_announce(deal, current, stage, now)  # from the stage it is in: under the lock, it moves
    return deal


def _move_and_announce(deal: Deal, seen: int, stage: Stage, now) -> bool:
    """Move the deal if it is still in stage `seen`, and announce the move: on PostgreSQL one
    statement writes both (the receivers' rows come from `records_changed`'s `joined` mode and
    are inserted only if the UPDATE matched), so a move costs one round trip, not two. True if
    the deal moved."""
    connection = connections[router.db_for_write(Deal)]
    change = deal_stage_change(deal, seen, to_stage_id=stage.pk)
    joins = changes.joined_inserts(Deal, change) if connection.vendor == "postgresql" else None
    if joins is None:
        moved = Deal.objects.filter(pk=deal.pk, stage_id=seen).update(stage=stage, updated_at=now,
                                                                      stage_entered_at=now)
    else:
        params = [stage.pk, now, now, deal.pk, seen]
        for join in joins:
            params.extend(join.values)
        with server_bound_cursor(connection) as cursor:  # (the payload's JSON is not quoted in Python)
            cursor.execute(_move_sql(joins, connection), params)
            moved = cursor.fetchone()[0]
    if not moved:
        return False
    deal.stage, deal.updated_at, deal.stage_entered_at, deal._loaded_stage_id = stage, now, now, stage.pk
    if joins is None:
        changes.records_changed.send(sender=Deal, changes=[change])
    else:
        for join in joins:
            join.written()
    return True


_MOVE_SQL: dict[tuple[tuple[str, tuple[str, ...]], ...], str] = {}  # by the joined rows' tables and columns


def _move_sql(joins: list[changes.JoinedInsert], connection) -> str:
    """The move's statement with these joined rows (written once per shape: it runs on every move)."""
    shape = tuple((join.table, join.columns) for join in joins)
    sql = _MOVE_SQL.get(shape)
    if sql is None:
        quote = connection.ops.quote_name
        table, stage_column = quote(Deal._meta.db_table), quote(Deal._meta.get_field("stage").column)
        inserts = "".join(f", joined_{n} AS (INSERT INTO {quote(join.table)} "
                          f"({', '.join(quote(c) for c in join.columns)}) "
                          f"SELECT {', '.join(['%s'] * len(join.values))} FROM moved)" for n, join in enumerate(joins))
        sql = _MOVE_SQL[shape] = (
            f"WITH moved AS (UPDATE {table} SET {stage_column} = %s, {quote('updated_at')} = %s, "
            f"{quote('stage_entered_at')} = %s WHERE {quote(Deal._meta.pk.column)} = %s AND {stage_column} = %s "
            f"RETURNING 1){inserts} SELECT count(*) FROM moved")
    return sql


def _first_stage(organization_id: int) -> Stage:
    stage = Stage.objects.filter(organization_id=organization_id, is_won=False, is_lost=False).first()
    if stage is None:
        raise ValidationError({"stage": "The organization has no open stage to put the deal in."})
    return stage


def _split_name(name: str) -> tuple[str, str]:
    first, _, last = name.strip().partition(" ")
    return first or name, last


@transaction.atomic
def lead_convert(*, lead: Lead, stage: Stage | None = None, amount: Decimal = Decimal("0"), by=None) -> Deal:
    """Convert a lead: create its Contact and Deal, link them, fire `lead_converted`.

    `by`: the person asking (ops or admin of the lead's organization); None for the system."""
    lead = Lead.objects.select_for_update(no_key=True).get(pk=lead.pk)
    _check_role(by, lead.organization_id, "ops", "convert")
    if lead.converted_at is not None:
        raise Refused("This lead is already converted.")
    stage = stage or _first_stage(lead.organization_id)
    first, last = _split_name(lead.name)
    contact = Contact.objects.create(
        organization_id=lead.organization_id, first_name=first, last_name=last,
        email=lead.email, company=lead.company, source_lead=lead,
    )
    deal = Deal.objects.create(
        organization_id=lead.organization_id, title=lead.company or lead.name, amount=amount,
        stage=stage, contact=contact, owner_id=lead.owner_id, source_lead=lead,
    )
    lead.converted_at = timezone.now()
    lead.converted_contact = contact
    lead.converted_deal = deal
    lead.status = Lead.Status.CONVERTED
    lead.save()
    return deal


@transaction.atomic
def leads_convert_bulk(*, organization_id: int, lead_ids: list) -> int:
    """Convert many leads in one transaction with bulk inserts; fires one change per record.

    Returns how many leads were converted (already converted ones are left alone).
    """
    leads = list(
        Lead.objects.select_for_update(no_key=True)
        .filter(organization_id=organization_id, pk__in=lead_ids, converted_at__isnull=True)
        .order_by("pk")
    )
    if not leads:
        return 0
    stage = _first_stage(organization_id)
    now = timezone.now()
    contacts = []
    for lead in leads:
        first, last = _split_name(lead.name)
        contacts.append(Contact(organization_id=organization_id, first_name=first, last_name=last,
                                email=lead.email, company=lead.company, source_lead_id=lead.pk))
    contacts = bulk_insert(contacts, batch_size=BULK_BATCH)  # (bulk_insert.py: a fraction of bulk_create's CPU)
    deals = [
        Deal(organization_id=organization_id, title=lead.company or lead.name, stage=stage,
             contact=contact, owner_id=lead.owner_id, source_lead_id=lead.pk)
        for lead, contact in zip(leads, contacts, strict=True)
    ]
    bulk_insert(deals, batch_size=BULK_BATCH)
    # One set-based UPDATE links every lead to what it became (bulk_update's per-row CASE
    # took seconds for thousands of leads).
    Lead.objects.filter(pk__in=[lead.pk for lead in leads]).update(
        converted_at=now, status=Lead.Status.CONVERTED,
        converted_contact=Subquery(Contact.objects.filter(source_lead=OuterRef("pk")).values("pk")[:1]),
        converted_deal=Subquery(Deal.objects.filter(source_lead=OuterRef("pk")).values("pk")[:1]),
    )
    for lead, deal in zip(leads, deals, strict=True):
        lead.converted_deal_id = deal.pk
    found = [
        changes.RecordChange(changes.DEAL_CREATED, organization_id, "deal", d.pk, {"to_stage_id": stage.pk})
        for d in deals
    ] + [lead_converted_change(lead) for lead in leads]
    # One operation of this many records (crm/sources.py): workflows may hold or digest it.
    with sources.bulk_operation(sources.BULK, size=len(leads)) if len(leads) > 1 else nullcontext():
        changes.records_changed.send(sender=Lead, changes=found)
    return len(leads)


IMPORT_FIELDS = ("name", "email", "company")


def leads_import(*, organization_id: int, rows: list[dict], by=None, owner=None) -> list[Lead]:
    """Create many leads from an import (a CSV file) in one transaction: every row is checked
    first, and one bad row refuses the whole import (ValidationError naming the rows). The
    leads' "created" changes are one operation of the import's size (crm/sources.py), so a
    workflow can hold or digest them instead of running thousands of times."""
    _check_role(by, organization_id, "ops", "import")
    problems, leads = [], []
    for number, row in enumerate(rows, start=1):
        unknown = sorted(set(row) - set(IMPORT_FIELDS))
        values = {key: str(row.get(key) or "").strip() for key in IMPORT_FIELDS}
        lead = Lead(organization_id=organization_id, owner=owner, **values)
        try:
            if unknown:
                raise ValidationError(f"unknown column(s) {', '.join(unknown)}; the columns are "
                                      f"{', '.join(IMPORT_FIELDS)}")
            lead.full_clean(exclude=["organization", "owner", "converted_contact", "converted_deal"])
        except ValidationError as exc:
            problems.append(f"row {number}: {'; '.join(exc.messages)}")
        leads.append(lead)
    if problems:
        raise ValidationError(["Nothing was imported.", *problems[:50]])
    with transaction.atomic():
        made = bulk_insert(leads, batch_size=BULK_BATCH)
        found = [changes.RecordChange(changes.LEAD_CREATED, organization_id, "lead", lead.pk) for lead in made]
        with sources.bulk_operation(sources.IMPORT, size=len(made)):
            changes.records_changed.send(sender=Lead, changes=found)
    return made


# --- Creates, edits and deletes from the admin and the API ------------------------------------

def _check_role(by, organization_id: int, role: str, verb: str) -> None:
    if by is not None and not user_has_role(by, organization_id, role):
        raise PermissionDenied(f"You may not {verb} records of this organization.")


def _save_checked(record, **kwargs) -> None:
    """Save in a savepoint: a unique constraint that another request satisfied between the
    validation and the INSERT (two creates of the same stage slug at once) is a clear error,
    not a broken transaction."""
    try:
        with transaction.atomic():
            record.save(**kwargs)
    except IntegrityError:
        raise Refused("Another change saved the same values at the same moment; reload and try again.") from None


@transaction.atomic
def record_create(*, model, organization_id: int, by, values: dict, role: str = "ops"):
    """Create a CRM record of `model` in the organization from `values` (field → python value,
    links as model instances).

    The model's own validation runs before the INSERT: field formats and choices, links that
    must stay inside the organization (TenantOwned), unique constraints. The save fires what a
    creation fires (`deal_created`, `lead_created`), in this transaction. Returns the record."""
    _check_role(by, organization_id, role, "add")
    record = model(organization_id=organization_id, **values)
    record.full_clean()
    _save_checked(record)
    return record


@transaction.atomic
def record_update(*, record, by, changes: dict, expected: dict | None = None, role: str = "ops"):
    """Write only the fields in `changes`, under a row lock, and refuse to overwrite a field
    someone else changed since the caller read it (`expected`: field → value seen then).

    The stage of a deal is written through `Deal.save`, which decides the stage change under
    the same lock. Returns the saved record."""
    model = type(record)
    current = model._default_manager.select_for_update(no_key=True).get(pk=record.pk)
    _check_role(by, current.organization_id, role, "change")
    found = conflicts(current, expected, changes)
    if found:
        raise StaleEdit.of_fields(found)
    if not changes:
        return current
    for name, value in changes.items():
        setattr(current, name, value)
    current.full_clean(exclude=[f.name for f in model._meta.fields if f.name not in changes])
    fields = [model._meta.get_field(name).name for name in changes]
    # full_clean skips a constraint when one of its fields is excluded (a stage's slug is unique
    # per organization, and the organization is never among the changes): check those too.
    if any(set(getattr(c, "fields", ())) & set(fields) for c in model._meta.constraints):
        current.validate_constraints()
    if any(f.name == "updated_at" for f in model._meta.fields):
        fields.append("updated_at")
    _save_checked(current, update_fields=fields)
    return current


@transaction.atomic
def records_archive(*, model, organization_id: int, ids: list, by, archived: bool = True) -> int:
    """Archive (or restore) these records of the organization: kept with their history, out of
    the lists' way. Each save announces the change (archived_at), as any edit does. Returns how
    many changed."""
    _check_role(by, organization_id, "ops", "archive")
    changed = 0
    for record in model._default_manager.select_for_update(no_key=True).filter(
            organization_id=organization_id, pk__in=ids, archived_at__isnull=archived).order_by("pk"):
        record.archived_at = timezone.now() if archived else None
        record.save(update_fields=["archived_at"])
        changed += 1
    return changed


@transaction.atomic
def record_delete(*, record, by, role: str = "admin") -> None:
    """Delete a CRM record after locking it, so a workflow run that is writing rows linked to it
    finishes first and its rows are deleted with it (instead of the delete failing at commit)."""
    model = type(record)
    # Leads before deals, the order a workflow run locks them in: deleting a deal also updates
    # the leads converted into it, deleting a lead the deals made from it.
    if model is Deal:
        list(Lead.objects.select_for_update().filter(converted_deal_id=record.pk).order_by("pk").values_list("pk"))
    current = model._default_manager.select_for_update().filter(pk=record.pk).first()
    if current is None:
        return
    _check_role(by, current.organization_id, role, "delete")
    if model is Lead:
        list(Deal.objects.select_for_update().filter(Q(source_lead_id=current.pk) | Q(pk=current.converted_deal_id))
             .order_by("pk").values_list("pk"))
    current.delete()


def notifications_mark_all_read(*, user, organization_id: int) -> int:
    """Mark all the person's unread notifications in this organization as read; returns how
    many. One UPDATE, as `notifications_mark_read`."""
    return Notification.objects.filter(user=user, organization_id=organization_id, read_at=None).update(
        read_at=timezone.now())


def notifications_mark_read(*, user, notification_ids: list[int]) -> int:
    """Mark the person's own unread notifications among these as read; returns how many.

    Only the recipient reads a notification: a superuser who sees everyone's notifications
    does not mark someone else's as read. One UPDATE, and marking twice changes nothing (the
    first read time is kept)."""
    return Notification.objects.filter(pk__in=notification_ids, user=user, read_at=None).update(
        read_at=timezone.now())
