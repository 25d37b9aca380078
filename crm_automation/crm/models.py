"""CRM records. Every row belongs to an Organization (tenants never mix)."""

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction

from crm_automation.crm import changes


class Organization(models.Model):
    class Plan(models.TextChoices):
        FREE = "free", "Free"
        PRO = "pro", "Pro"
        ENTERPRISE = "enterprise", "Enterprise"

    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    plan = models.CharField(max_length=20, choices=Plan.choices, default=Plan.PRO)
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


class Stage(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="stages")
    slug = models.SlugField()
    name = models.CharField(max_length=100)
    order = models.PositiveSmallIntegerField(default=0)
    is_won = models.BooleanField(default=False)
    is_lost = models.BooleanField(default=False)

    class Meta:
        ordering = ["organization_id", "order"]
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="uniq_stage_slug")]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="contacts")
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    company = models.CharField(max_length=200, blank=True)
    source_lead = models.ForeignKey("Lead", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                                    editable=False, help_text="The lead this contact was converted from.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Deal(models.Model):
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
    source_lead = models.ForeignKey("Lead", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
                                    editable=False, help_text="The lead this deal was converted from.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "stage"])]

    def __str__(self) -> str:
        return self.title


    def save(self, *args, **kwargs) -> None:
        """Save, and announce a creation or a stage change in the same transaction."""
        creating = self._state.adding
        previous_stage_id = getattr(self, "_loaded_stage_id", None)
        update_fields = kwargs.get("update_fields")
        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            super().save(*args, **kwargs)
            change = None
            if creating:
                change = changes.RecordChange(
                    changes.DEAL_CREATED, self.organization_id, "deal", self.pk,
                    {"to_stage_id": self.stage_id},
                )
            elif self.stage_id != previous_stage_id and (
                update_fields is None or "stage" in update_fields or "stage_id" in update_fields
            ):
                change = changes.RecordChange(
                    changes.DEAL_STAGE_CHANGE, self.organization_id, "deal", self.pk,
                    {"from_stage_id": previous_stage_id, "to_stage_id": self.stage_id},
                )
            if change is not None:
                changes.records_changed.send(sender=Deal, changes=[change])
        self._loaded_stage_id = self.stage_id

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded_stage_id = instance.__dict__.get("stage_id")
        return instance


class Lead(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        CONTACTED = "contacted", "Contacted"
        QUALIFIED = "qualified", "Qualified"
        CONVERTED = "converted", "Converted"
        LOST = "lost", "Lost"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="leads")
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    company = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    converted_at = models.DateTimeField(null=True, blank=True)
    converted_contact = models.ForeignKey(
        Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    converted_deal = models.ForeignKey(Deal, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


    def save(self, *args, **kwargs) -> None:
        """Save, and announce a creation or a conversion in the same transaction."""
        creating = self._state.adding
        was_converted = getattr(self, "_was_converted", False)
        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            super().save(*args, **kwargs)
            found = []
            if creating:
                found.append(changes.RecordChange(changes.LEAD_CREATED, self.organization_id, "lead", self.pk))
            if self.converted_at is not None and not was_converted:
                found.append(lead_converted_change(self))
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


class Task(models.Model):
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
    # Set when a workflow created the task: "run:<run id>:step:<position>". Unique, so a
    # redelivered run can never create the same task twice.
    automation_key = models.CharField(max_length=100, null=True, blank=True, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.title


class EmailMessage(models.Model):
    """An outbox row. Delivery goes through Django's email backend (SMTP, anymail, file...)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="emails")
    to = models.EmailField()
    subject = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    deal = models.ForeignKey(Deal, on_delete=models.SET_NULL, null=True, blank=True, related_name="emails")
    lead = models.ForeignKey(Lead, on_delete=models.SET_NULL, null=True, blank=True, related_name="emails")
    automation_key = models.CharField(max_length=100, null=True, blank=True, unique=True, editable=False)
    sending_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.subject} → {self.to}"
