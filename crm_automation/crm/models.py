"""CRM records. Every row belongs to an Organization (tenants never mix)."""

import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from crm_automation.crm import changes
from crm_automation.crm.tenancy import TenantOwned
from crm_automation.webhooks.fields import EncryptedSecretField


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"“{value}” is not a time zone; use a name such as Europe/Berlin or America/New_York.")


class Organization(models.Model):
    class Plan(models.TextChoices):
        FREE = "free", "Free"
        PRO = "pro", "Pro"
        ENTERPRISE = "enterprise", "Enterprise"

    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    plan = models.CharField(max_length=20, choices=Plan.choices, default=Plan.PRO)
    # Pages show times in it (with seconds); an IANA name such as "Europe/Berlin".
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone],
                                 help_text="The time zone pages show times in, e.g. Europe/Berlin.")
    # AI steps stop (with the reason) once this month's AI calls used this many tokens
    # (automation/ai/budget.py); empty: no budget.
    ai_monthly_token_budget = models.PositiveBigIntegerField(
        null=True, blank=True, verbose_name="monthly AI budget (tokens)",
        help_text="AI steps fail with the reason once this month's AI use reaches it; empty for no budget.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        OPS = "ops", "Ops"
        VIEWER = "viewer", "Viewer"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="uniq_membership")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization} ({self.role})"


class Stage(TenantOwned):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="stages")
    slug = models.SlugField()
    name = models.CharField(max_length=100)
    order = models.PositiveSmallIntegerField(default=0)
    is_won = models.BooleanField(default=False)
    is_lost = models.BooleanField(default=False)

    class Meta:
        ordering = ["organization_id", "order"]
        # `won`, `Won` and `WON` would be three stages a person cannot tell apart in a workflow.
        constraints = [models.UniqueConstraint(models.F("organization"), Lower("slug"), name="uniq_stage_slug_ci",
                                               violation_error_message="Stage slugs are unique in an organization "
                                                                       "regardless of case.")]

    def __str__(self) -> str:
        return self.name

    def validate_constraints(self, exclude=None) -> None:
        """The slug's rule is checked here, and named on the slug field, whenever the slug is
        validated: also when `exclude` holds the organization (record_update and the admin's change
        form pass it, and Django would then skip a constraint that names it)."""
        exclude = set(exclude or ())
        super().validate_constraints(exclude=exclude | {"slug"})
        if "slug" not in exclude and self.slug and self.organization_id:
            taken = (Stage.objects.filter(organization_id=self.organization_id, slug__iexact=self.slug)
                     .exclude(pk=self.pk).values_list("slug", flat=True).first())
            if taken is not None:
                raise ValidationError({"slug": [f"“{self.slug}” is taken: this organization already has the stage "
                                                f"“{taken}”, and stage slugs are unique regardless of case."]})


class CustomField(models.Model):
    """A field of the organization's own on its deals, leads, contacts or projects (crm/custom_fields.py
    checks its definition and every value written; the values are in the record's `custom`)."""

    class Entity(models.TextChoices):
        DEAL = "deal", "Deal"
        LEAD = "lead", "Lead"
        CONTACT = "contact", "Contact"
        PROJECT = "project", "Project"

    class Kind(models.TextChoices):
        TEXT = "text", "Text"
        LONG_TEXT = "long_text", "Long text"
        NUMBER = "number", "Number"
        MONEY = "money", "Money"
        DATE = "date", "Date"
        DATETIME = "datetime", "Date and time"
        BOOLEAN = "boolean", "Yes / no"
        CHOICE = "choice", "One of"
        CHOICES = "choices", "Several of"
        USER = "user", "User"
        URL = "url", "URL"
        EMAIL = "email", "Email"
        PHONE = "phone", "Phone"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="custom_fields")
    entity = models.CharField(max_length=10, choices=Entity.choices)
    key = models.SlugField(max_length=40, help_text="How workflows name it: {{deal.custom.<key>}}. It never "
                                                    "changes; rename the label instead.")
    label = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    choices = models.JSONField(default=list, blank=True, help_text="For one-of and several-of: the choices.")
    help_text = models.CharField(max_length=200, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization_id", "entity", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["organization", "entity", "key"], name="uniq_custom_field_key")]

    def __str__(self) -> str:
        return f"{self.get_entity_display()} › {self.label}"

    def clean(self) -> None:
        from crm_automation.crm.custom_fields import check_definition

        errors = check_definition(self)
        if self.pk is not None:
            stored = CustomField.objects.filter(pk=self.pk).values_list("key", "entity", "kind").first()
            if stored is not None and stored[:2] != (self.key, self.entity):
                errors.setdefault("key", []).append("workflows name the field by its key: it never changes (rename "
                                                    "the label instead)")
            elif stored is not None and stored[2] != self.kind:
                errors.setdefault("kind", []).append("values are stored by kind: make a new field instead")
        if errors:
            raise ValidationError(errors)

    def delete(self, *args, **kwargs):
        """Refused while a live workflow reads it (the workflows are named)."""
        from crm_automation.crm.custom_fields import used_by

        users = used_by(self)
        if users:
            raise ValidationError(f"“{self.label}” is used by the live workflow(s) {', '.join(users)}: change them "
                                  "(or pause and archive them) first.")
        return super().delete(*args, **kwargs)


class Contact(TenantOwned):
    tenant_links = ("source_lead",)
    custom_entity = "contact"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="contacts")
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    # The phone in E.164 (crm/phones.py), written with every save: another system's event names
    # a contact by phone in whatever form it has it, and finds it by this indexed value.
    phone_e164 = models.CharField(max_length=20, blank=True, editable=False)
    company = models.CharField(max_length=200, blank=True)
    source_lead = models.ForeignKey("Lead", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                                    editable=False, help_text="The lead this contact was converted from.")
    custom = models.JSONField(default=dict, blank=True, help_text="Values of the organization's own fields.")
    # The contact replied STOP (or UNSUBSCRIBE …) to an SMS: later SMS are refused with that reason
    # until they reply START (crm/sms/inbound.py).
    sms_opted_out_at = models.DateTimeField(null=True, blank=True, editable=False,
                                            help_text="When the contact asked for no more SMS (STOP).")
    # Archived: kept with its history, out of the way (the admin's and the API's lists filter on it);
    # a person or a workflow's "Archive a record" step archives it, the admin restores it.
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when a workflow created it: "run:<run>:node:<node id>[:<token>]" (one contact per step).
    automation_key = models.CharField(max_length=100, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "phone_e164"], name="contact_phone_idx"),
                   models.Index(fields=["organization", "email"], name="contact_email_idx")]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def save(self, *args, **kwargs) -> None:
        """Save, and announce a creation or a change of tracked fields (the contact travels in
        the event: workflows read {{contact.email}} without loading it). What changed is decided
        under the row's lock against the stored values, as a deal's save does."""
        creating = self._state.adding
        update_fields = kwargs.get("update_fields")
        fields = () if creating else changes.written(changes.CONTACT_TRACKED, update_fields)
        self.check_links(update_fields)  # before the transaction, as Deal.save does
        from crm_automation.crm.phones import e164

        self.phone_e164 = e164(self.phone)
        if update_fields is not None and "phone" in update_fields:
            kwargs["update_fields"] = {*update_fields, "phone_e164"}
        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            before = (Contact.objects.select_for_update(no_key=True).filter(pk=self.pk).values(*fields).first()
                      if fields else None)
            super().save(*args, links_checked=True, **kwargs)
            change = None
            if creating:
                change = contact_change(self, changes.CONTACT_CREATED, {"contact": contact_snapshot(self)})
            elif before is not None:
                changed = changes.changed_fields(before, self, fields)
                if changed:
                    change = contact_change(self, changes.CONTACT_UPDATED,
                                            {"contact": contact_snapshot(self), "changed": changed})
            if change is not None:
                changes.records_changed.send(sender=Contact, changes=[change])


def contact_snapshot(contact: Contact) -> dict:
    snapshot = {name: changes.json_value(getattr(contact, name)) for name in changes.CONTACT_TRACKED}
    snapshot["id"] = contact.pk
    return snapshot


def contact_change(contact: Contact, kind: str, payload: dict) -> changes.RecordChange:
    return changes.RecordChange(kind, contact.organization_id, "contact", changes.stand_in("contact", contact.pk),
                                payload)


class Deal(TenantOwned):
    tenant_links = ("stage", "contact", "source_lead")
    custom_entity = "deal"
    member_links = ("owner",)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="deals")
    title = models.CharField(max_length=200)
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    stage = models.ForeignKey(Stage, on_delete=models.PROTECT, related_name="deals")
    probability = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    contact = models.ForeignKey(Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="deals")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    close_date = models.DateField(null=True, blank=True)
    # When the deal entered its current stage ("in Proposal for 14 days" triggers read it through
    # the index below); written with every stage change, by the same statement.
    stage_entered_at = models.DateTimeField(default=timezone.now, editable=False)
    source_lead = models.ForeignKey("Lead", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                                    editable=False, help_text="The lead this deal was converted from.")
    custom = models.JSONField(default=dict, blank=True, help_text="Values of the organization's own fields.")
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    automation_key = models.CharField(max_length=100, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The relative-time triggers' queries (automation/relative_time.py): deals whose close
        # date, creation or time in a stage comes up, found by range, never by scanning deals.
        indexes = [models.Index(fields=["organization", "stage", "stage_entered_at"], name="deal_stage_since_idx"),
                   models.Index(fields=["organization", "close_date"], name="deal_close_date_idx"),
                   models.Index(fields=["organization", "created_at"], name="deal_created_idx")]

    def __str__(self) -> str:
        return self.title


    def save(self, *args, **kwargs) -> None:
        """Save, and announce a creation or a stage change in the same transaction.

        Whether the stage changed is decided under a row lock against the stored value, never
        against this instance's possibly stale copy: four processes moving the same deal to
        "won" at once give one event, with the true from-stage. (`deal_move_to_stage` does the
        same with one conditional UPDATE; this path is for plain saves.)"""
        creating = self._state.adding
        update_fields = kwargs.get("update_fields")
        fields = changes.written(changes.DEAL_TRACKED, update_fields)
        self.check_links(update_fields)
        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            before = None
            if not creating and fields:
                # The stored values, under the row's lock: what changed is decided against them,
                # never against this instance's possibly stale copy.
                before = Deal.objects.select_for_update(no_key=True).filter(pk=self.pk).values(*fields).first()
                if before is not None and before.get("stage_id", self.stage_id) != self.stage_id:
                    self.stage_entered_at = timezone.now()
                    if update_fields is not None:
                        kwargs["update_fields"] = {*update_fields, "stage_entered_at"}
            super().save(*args, links_checked=True, **kwargs)
            change = None
            if creating:
                change = deal_created_change(self)
            elif before is not None:
                changed = changes.changed_fields(before, self, fields)
                if "stage" in changed:
                    change = deal_stage_change(self, before["stage_id"], changed)
                elif changed:
                    change = changes.RecordChange(changes.DEAL_UPDATED, self.organization_id, "deal", self.pk,
                                                  {"changed": changed})
            if change is not None:
                changes.records_changed.send(sender=Deal, changes=[change])
        self._loaded_stage_id = self.stage_id

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded_stage_id = instance.__dict__.get("stage_id")
        return instance


def deal_created_change(deal: "Deal") -> changes.RecordChange:
    return changes.RecordChange(changes.DEAL_CREATED, deal.organization_id, "deal", deal.pk,
                                {"to_stage_id": deal.stage_id})


def deal_stage_change(deal: "Deal", from_stage_id: int, changed: dict | None = None,
                      to_stage_id: int | None = None) -> changes.RecordChange:
    """The change of a deal moved from `from_stage_id` to `to_stage_id` (by default, its stage now)."""
    to_stage_id = deal.stage_id if to_stage_id is None else to_stage_id
    return changes.RecordChange(changes.DEAL_STAGE_CHANGE, deal.organization_id, "deal", deal.pk,
                                {"from_stage_id": from_stage_id, "to_stage_id": to_stage_id,
                                 "changed": changed or {"stage": [from_stage_id, to_stage_id]}})


class Lead(TenantOwned):
    tenant_links = ("converted_contact", "converted_deal")
    custom_entity = "lead"
    member_links = ("owner",)

    class Status(models.TextChoices):
        NEW = "new", "New"
        CONTACTED = "contacted", "Contacted"
        QUALIFIED = "qualified", "Qualified"
        CONVERTED = "converted", "Converted"
        LOST = "lost", "Lost"

    class Source(models.TextChoices):
        """Where a lead came from: the choices most CRMs ship with (empty: not known)."""
        WEBSITE = "website", "Website"
        REFERRAL = "referral", "Referral"
        ADVERTISING = "advertising", "Advertising"
        SOCIAL = "social", "Social media"
        EMAIL = "email", "Email campaign"
        EVENT = "event", "Event"
        PARTNER = "partner", "Partner"
        COLD_OUTREACH = "cold_outreach", "Cold outreach"
        OTHER = "other", "Other"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="leads")
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    company = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW)
    source = models.CharField(max_length=20, choices=Source.choices, blank=True, default="",
                              help_text="Where the lead came from.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    converted_at = models.DateTimeField(null=True, blank=True)
    converted_contact = models.ForeignKey(
        Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    converted_deal = models.ForeignKey(Deal, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    custom = models.JSONField(default=dict, blank=True, help_text="Values of the organization's own fields.")
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


    def status_errors(self) -> dict[str, str]:
        """"Converted" means a contact and a deal were made: never a status set by hand."""
        if self.status == self.Status.CONVERTED and self.converted_at is None:
            return {"status": "A lead becomes Converted only by converting it (the “Convert” action creates "
                              "its contact and deal); choose another status, or convert it."}
        if self.converted_at is not None and self.status != self.Status.CONVERTED:
            return {"status": "This lead was converted; its status stays Converted."}
        return {}

    def clean(self) -> None:
        super().clean()
        errors = self.status_errors()
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs) -> None:
        """Save, and announce a creation or a conversion in the same transaction."""
        errors = self.status_errors()
        if errors:
            raise ValidationError(errors)
        self.check_links(kwargs.get("update_fields"))
        creating = self._state.adding
        was_converted = getattr(self, "_was_converted", False)
        fields = changes.written(changes.LEAD_TRACKED, kwargs.get("update_fields"))
        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            before = None
            if not creating and fields:
                before = Lead.objects.select_for_update(no_key=True).filter(pk=self.pk).values(*fields).first()
            super().save(*args, links_checked=True, **kwargs)
            found = []
            if creating:
                found.append(changes.RecordChange(changes.LEAD_CREATED, self.organization_id, "lead", self.pk))
            if self.converted_at is not None and not was_converted:
                found.append(lead_converted_change(self))
            elif before is not None:
                changed = changes.changed_fields(before, self, fields)
                if changed:
                    found.append(changes.RecordChange(changes.LEAD_UPDATED, self.organization_id, "lead", self.pk,
                                                      {"changed": changed}))
            if found:
                changes.records_changed.send(sender=Lead, changes=found)
        self._was_converted = self.converted_at is not None

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._was_converted = instance.__dict__.get("converted_at") is not None
        return instance


def lead_converted_change(lead: Lead) -> changes.RecordChange:
    return changes.RecordChange(
        changes.LEAD_CONVERTED, lead.organization_id, "lead", lead.pk,
        {"deal_id": str(lead.converted_deal_id) if lead.converted_deal_id else None,
         "to_stage_id": None},
    )


class Project(TenantOwned):
    """The work sold in a won deal: created by hand, through the API or by a workflow
    ("create a project from this deal"). Its saves announce project_created, project_updated
    and project_completed as a deal's announce its changes."""

    tenant_links = ("contact", "deal")
    custom_entity = "project"
    member_links = ("owner",)

    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PLANNED)
    service_type = models.CharField(max_length=100, blank=True, help_text="The kind of work, e.g. Roof repair.")
    contact = models.ForeignKey(Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="projects")
    deal = models.ForeignKey(Deal, on_delete=models.SET_NULL, null=True, blank=True, related_name="projects",
                             help_text="The deal that sold it.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="+")
    start_date = models.DateField(null=True, blank=True)
    end_date = models.DateField(null=True, blank=True, help_text="When it is due to end, or ended.")
    custom = models.JSONField(default=dict, blank=True, help_text="Values of the organization's own fields.")
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when a workflow created it: "run:<run>:node:<node id>[:<token>]" (one project per step).
    automation_key = models.CharField(max_length=100, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "status"], name="project_status_idx")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        """Save, and announce a creation, a completion (status to completed) or another change of
        its tracked fields, decided under the row's lock against the stored values."""
        creating = self._state.adding
        update_fields = kwargs.get("update_fields")
        fields = () if creating else changes.written(changes.PROJECT_TRACKED, update_fields)
        self.check_links(update_fields)
        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            before = (Project.objects.select_for_update(no_key=True).filter(pk=self.pk).values(*fields).first()
                      if fields else None)
            super().save(*args, links_checked=True, **kwargs)
            change = None
            if creating:
                change = changes.RecordChange(changes.PROJECT_CREATED, self.organization_id, "project", self.pk)
            elif before is not None:
                changed = changes.changed_fields(before, self, fields)
                if changed:
                    completed = changed.get("status", [None, None])[1] == self.Status.COMPLETED
                    change = changes.RecordChange(changes.PROJECT_COMPLETED if completed else changes.PROJECT_UPDATED,
                                                  self.organization_id, "project", self.pk, {"changed": changed})
            if change is not None:
                changes.records_changed.send(sender=Project, changes=[change])


class Note(TenantOwned):
    """A note on a deal, lead, contact or project: written by a person or by a workflow."""

    tenant_links = ("deal", "lead", "contact", "project")
    member_links = ("author",)

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="notes")
    body = models.TextField()
    deal = models.ForeignKey(Deal, on_delete=models.CASCADE, null=True, blank=True, related_name="notes")
    lead = models.ForeignKey("Lead", on_delete=models.CASCADE, null=True, blank=True, related_name="notes")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, null=True, blank=True, related_name="notes")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, blank=True, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="+")
    automation_key = models.CharField(max_length=100, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.body[:60]

    def clean(self) -> None:
        super().clean()
        if not any((self.deal_id, self.lead_id, self.contact_id, self.project_id)):
            raise ValidationError("A note is on a deal, a lead, a contact or a project: choose one.")


class Task(TenantOwned):
    tenant_links = ("deal", "lead", "project")
    member_links = ("assignee",)

    class Priority(models.TextChoices):
        LOW = "low", "Low"
        NORMAL = "normal", "Normal"
        HIGH = "high", "High"
        URGENT = "urgent", "Urgent"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DONE = "done", "Done"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    due_date = models.DateField(null=True, blank=True)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    deal = models.ForeignKey(Deal, on_delete=models.CASCADE, null=True, blank=True, related_name="tasks")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, null=True, blank=True, related_name="tasks")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, blank=True, related_name="tasks")
    # Set when a workflow created the task: "run:<run>:node:<node id>[:<loop iteration>]". Unique, so
    # a redelivered run can never create the same task twice.
    automation_key = models.CharField(max_length=100, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.title

    def save(self, *args, **kwargs) -> None:
        """Save, and announce a task done (its status from open to done) or another change of
        its tracked fields, decided against the stored values under the row's lock. The event is
        about the task's deal or lead, so a workflow can act on it; the task travels in the
        payload ({{trigger.task.title}}). A completion is one `task_completed` event, offered to
        `task_updated` workflows too (catalog.LISTENERS)."""
        update_fields = kwargs.get("update_fields")
        fields = () if self._state.adding else changes.written(changes.TASK_TRACKED, update_fields)
        self.check_links(update_fields)  # before the transaction: a refused link leaves no broken one
        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            before = (Task.objects.select_for_update(no_key=True).filter(pk=self.pk).values(*fields).first()
                      if fields else None)
            super().save(*args, links_checked=True, **kwargs)
            changed = changes.changed_fields(before, self, fields) if before is not None else {}
            if changed:
                changes.records_changed.send(sender=Task, changes=[task_change(self, changed)])


def task_change(task: Task, changed: dict) -> changes.RecordChange:
    """`task_completed` for open → done, else `task_updated`; about the task's deal, lead or project."""
    done = changed.get("status") == [Task.Status.OPEN, Task.Status.DONE]
    if task.deal_id:
        entity, entity_id = "deal", task.deal_id
    elif task.lead_id:
        entity, entity_id = "lead", task.lead_id
    elif task.project_id:
        entity, entity_id = "project", task.project_id
    else:
        entity, entity_id = "task", changes.stand_in("task", task.pk)
    snapshot = {"id": task.pk, "title": task.title, "priority": task.priority, "status": task.status,
                "due_date": changes.json_value(task.due_date),
                "assignee": task.assignee.get_username() if task.assignee is not None else None}
    return changes.RecordChange(changes.TASK_COMPLETED if done else changes.TASK_UPDATED, task.organization_id,
                                entity, entity_id, {"task": snapshot, "changed": changed})


class OutboxStatus(models.TextChoices):
    """Where a message handed to a provider at most once stands (emails and SMS alike)."""

    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (not sent)"
    # The sender stopped while the provider had the message: it may or may not have gone out.
    # Never re-sent automatically; resending it is an explicit, warned choice.
    UNKNOWN = "unknown", "Outcome unknown"


class EmailMessage(TenantOwned):
    """An outbox row. Delivery goes through Django's email backend (SMTP, anymail, file...)."""

    tenant_links = ("deal", "lead")

    Status = OutboxStatus

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="emails")
    to = models.EmailField()
    subject = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    deal = models.ForeignKey(Deal, on_delete=models.SET_NULL, null=True, blank=True, related_name="emails")
    lead = models.ForeignKey(Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="emails")
    automation_key = models.CharField(max_length=150, null=True, blank=True, unique=True, editable=False)
    # The run whose step wrote it (as an SMS's): its workflow's costs count it (automation/ops/costs.py).
    run_id = models.BigIntegerField(null=True, blank=True, editable=False)
    sending_since = models.DateTimeField(null=True, blank=True, editable=False)
    attempts = models.PositiveSmallIntegerField(default=0, editable=False,
                                                help_text="How many times it was handed to the provider.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.subject} → {self.to}"

    class Meta:
        indexes = [models.Index(fields=["sending_since"], name="email_sending_idx",
                                condition=models.Q(status="sending"))]

    @property
    def message_id(self) -> str:
        """The same Message-ID every time this row is sent, so a resend is recognisable."""
        return f"<email-{self.pk}.{self.organization_id}@crm-automation>"


class Notification(TenantOwned):
    """An in-app message to one person (a workflow's "desktop-notification" step, or the system).

    Read in the admin by its recipient only. A workflow's notification carries two keys:
    `effect_key` is its step's key ("run:<run>:node:<node id>"), shared by all the recipients
    of that step, so a redelivered run finds what the step already made with one indexed
    lookup; `automation_key` adds the recipient and is unique, so however often the run is
    delivered, each person is notified once."""

    member_links = ("user",)

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="notifications")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications",
                             verbose_name="recipient")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=500, blank=True,
                            help_text="A page of this site to open, e.g. /admin/crm/deal/<id>/change/.")
    run_id = models.BigIntegerField(null=True, blank=True, editable=False,
                                    help_text="The workflow run that sent it, if any.")
    effect_key = models.CharField(max_length=100, null=True, blank=True, db_index=True, editable=False)
    automation_key = models.CharField(max_length=120, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_user_read_idx")]

    def __str__(self) -> str:
        return self.title

    @property
    def is_read(self) -> bool:
        return self.read_at is not None


class EventType(models.Model):
    """An event of the organization's own catalog (crm/business_events.py), next to the
    predeclared ones: its name, what it means, the record it is about, the fields of its data."""

    class About(models.TextChoices):
        NONE = "", "No record"
        CONTACT = "contact", "A contact"
        DEAL = "deal", "A deal"
        LEAD = "lead", "A lead"
        PROJECT = "project", "A project"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="event_types")
    name = models.CharField(max_length=32, help_text="How workflows and senders name it, e.g. permit.approved. It "
                                                     "never changes.")
    description = models.CharField(max_length=300, blank=True)
    about = models.CharField(max_length=10, choices=About.choices, blank=True,
                             help_text="The record every event of this kind must name.")
    fields = models.JSONField(default=list, blank=True,
                              help_text='Its data, e.g. [{"key": "permit.number", "kind": "text", "required": true, '
                                        '"label": "Permit number"}].')
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization_id", "name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_event_type_name")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from crm_automation.crm.business_events import check_declaration

        errors = check_declaration(self)
        if self.pk is not None:
            stored = EventType.objects.filter(pk=self.pk).values_list("name", flat=True).first()
            if stored is not None and stored != self.name:
                errors.setdefault("name", []).append("workflows and senders name the event by it: it never changes")
        if errors:
            raise ValidationError(errors)

    def delete(self, *args, **kwargs):
        """Refused while a live workflow listens to it (the workflows are named)."""
        from crm_automation.automation.models import Workflow, WorkflowStatus

        users = list(Workflow.objects.filter(
            organization_id=self.organization_id, trigger_type=f"event:{self.name}",
            status__in=[WorkflowStatus.ACTIVATED, WorkflowStatus.PAUSED],
        ).order_by("name").values_list("name", flat=True))
        if users:
            raise ValidationError(f"“{self.name}” starts the live workflow(s) {', '.join(users)}: change them (or "
                                  "pause and archive them) first.")
        return super().delete(*args, **kwargs)


class BusinessEvent(TenantOwned):
    """An event another system sent (crm/business_events.py), as it was accepted: kept so a
    person sees what arrived, and unique per idempotency key so a resend runs nothing twice."""

    tenant_links = ("contact", "deal", "lead", "project")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="business_events")
    name = models.CharField(max_length=32)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    contact = models.ForeignKey(Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    deal = models.ForeignKey(Deal, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    source = models.CharField(max_length=120, default="api", help_text="api, webhook:<endpoint> or a command.")
    sent_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="+")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["organization", "idempotency_key"], name="uniq_event_key",
                                               condition=models.Q(idempotency_key__isnull=False))]
        indexes = [models.Index(fields=["organization", "-received_at"], name="business_event_org_idx")]

    def __str__(self) -> str:
        return f"{self.name} at {self.received_at:%Y-%m-%d %H:%M:%S}" if self.received_at else self.name


class SmsSettings(models.Model):
    """An organization's SMS sender: the provider, the number messages come from, its credentials
    (the token encrypted at rest, as webhook secrets are) and its quiet hours (no SMS goes out
    between quiet_start and quiet_end in the organization's time zone: it waits for the next
    allowed minute)."""

    class Provider(models.TextChoices):
        FAKE = "fake", "Test provider (nothing leaves this server)"
        TWILIO = "twilio", "Twilio"

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="sms_settings")
    # In the URLs the provider calls back (status callbacks, replies): not guessable, not the org's id.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    provider = models.CharField(max_length=10, choices=Provider.choices, default=Provider.FAKE)
    from_number = models.CharField(max_length=20, help_text="The number SMS are sent from, e.g. +15550100 "
                                                            "(stored in E.164).")
    account_sid = models.CharField(max_length=64, blank=True, help_text="Twilio: the account's SID (AC…).")
    auth_token = EncryptedSecretField(blank=True, editable=False)
    quiet_start = models.TimeField(null=True, blank=True, help_text="No SMS from this time (e.g. 21:00) …")
    quiet_end = models.TimeField(null=True, blank=True, help_text="… until this time (e.g. 08:00).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = verbose_name_plural = "SMS settings"

    def __str__(self) -> str:
        return f"SMS for {self.organization}: {self.get_provider_display()} from {self.from_number}"

    def clean(self) -> None:
        from crm_automation.crm.phones import e164

        errors: dict[str, str] = {}
        number = e164(self.from_number)
        if not number:
            errors["from_number"] = "is not a phone number; write it with its country code, e.g. +1 555 010 0100"
        else:
            self.from_number = number
        if self.provider == self.Provider.TWILIO and not self.account_sid.startswith("AC"):
            errors["account_sid"] = "Twilio's account SID starts with AC (the Twilio console shows it)"
        if (self.quiet_start is None) != (self.quiet_end is None):
            errors["quiet_end"] = "give both the start and the end of the quiet hours, or neither"
        elif self.quiet_start is not None and self.quiet_start == self.quiet_end:
            errors["quiet_end"] = "the quiet hours end when they start: leave both empty for none"
        if errors:
            raise ValidationError(errors)


class SmsMessage(TenantOwned):
    """An SMS outbox row (crm/sms/delivery.py): queued → sending → sent | failed | unknown, as an
    email; a message whose outcome is unknown is never sent again automatically. The provider's
    later word on it (delivered, undelivered) is `delivery`, from its signed status callbacks."""

    tenant_links = ("contact", "deal", "lead", "project")

    Status = OutboxStatus

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sms_messages")
    to = models.CharField(max_length=20, help_text="E.164")
    from_number = models.CharField(max_length=20)
    body = models.TextField()
    segments = models.PositiveSmallIntegerField(default=1)
    encoding = models.CharField(max_length=5, default="gsm7", help_text="gsm7 or ucs2")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    delivery = models.CharField(max_length=20, blank=True, help_text="The provider's word after sending: "
                                                                     "delivered, undelivered, failed …")
    provider_id = models.CharField(max_length=64, blank=True, db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    sending_since = models.DateTimeField(null=True, blank=True, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    contact = models.ForeignKey(Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="sms")
    deal = models.ForeignKey(Deal, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    lead = models.ForeignKey(Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    automation_key = models.CharField(max_length=150, null=True, blank=True, unique=True, editable=False)
    # A step that waits for the reply (wait_for_reply): its run, until when, and what came back.
    run_id = models.BigIntegerField(null=True, blank=True, editable=False)
    reply_by = models.DateTimeField(null=True, blank=True, help_text="The run waits for a reply until then.")
    reply = models.TextField(blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    # The run's step read the reply: a reply that came while its run was busy (and so not woken)
    # is found by the sweep until then (automation/runtime/replies.py).
    reply_seen = models.BooleanField(default=False, editable=False)
    no_reply_because = models.CharField(max_length=300, blank=True, help_text="Why no reply came to this "
                                                                              "message (another run got it).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["sending_since"], name="sms_sending_idx",
                                condition=models.Q(status="sending")),
                   # An incoming reply finds the messages waiting for it: the organization's, to that number.
                   models.Index(fields=["organization", "to", "-created_at"], name="sms_awaiting_reply_idx",
                                condition=models.Q(reply_by__isnull=False, replied_at__isnull=True)),
                   models.Index(fields=["run_id"], name="sms_reply_unseen_idx",
                                condition=models.Q(replied_at__isnull=False, reply_seen=False))]

    def __str__(self) -> str:
        return f"SMS to {self.to}: {self.body[:40]}"


class SmsInbound(models.Model):
    """A message the provider passed on to us (crm/sms/inbound.py): taken once per MessageSid."""

    class Kind(models.TextChoices):
        REPLY = "reply", "Reply"
        STOP = "stop", "Opt-out (STOP)"
        START = "start", "Opt-in (START)"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    provider_id = models.CharField(max_length=64)
    from_number = models.CharField(max_length=20)
    body = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.REPLY)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["organization", "provider_id"], name="uniq_sms_inbound")]
        indexes = [models.Index(fields=["organization", "from_number", "-received_at"], name="sms_inbound_from_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} from {self.from_number}"

