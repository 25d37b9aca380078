import secrets

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from crm_automation.crm.admin_forms import ConcurrentEditForm
from crm_automation.crm.admin_scoping import OrgScopedAdmin, OwnRowsFilter
from crm_automation.crm.custom_fields import used_by
from crm_automation.crm.email_delivery import email_resend
from crm_automation.crm.models import (
    BusinessEvent,
    Contact,
    CustomField,
    Deal,
    EmailMessage,
    EventType,
    Lead,
    Membership,
    Note,
    Notification,
    Organization,
    Project,
    SmsInbound,
    SmsMessage,
    SmsSettings,
    Stage,
    Task,
)
from crm_automation.crm.selectors import user_has_role, user_org_roles
from crm_automation.crm.services import leads_convert_bulk, notifications_mark_read, records_archive
from crm_automation.crm.sms.providers import callback_url as sms_callback_url


class StageFilter(OwnRowsFilter):
    """The person's own stages, in pipeline order."""

    title = parameter_name = "stage"
    model, field, ordering, limit = Stage, "stage_id", ("organization__name", "order"), None

    def own_rows(self, request, model_admin):
        rows, several = super().own_rows(request, model_admin)
        return rows.select_related("organization"), several

    def label(self, row, several_orgs: bool) -> str:
        return f"{row.name} ({row.organization.name})" if several_orgs else row.name

class ArchivedFilter(admin.SimpleListFilter):
    """Records in use, archived ones, or all."""

    title, parameter_name = "archived", "archived"

    def lookups(self, request, model_admin):
        return [("no", "Not archived"), ("yes", "Archived")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(archived_at__isnull=self.value() == "no")
        return queryset


class Archivable:
    """Admin actions that archive and restore the selected records (crm/services.records_archive,
    per organization the person may change)."""

    ARCHIVING = ("archive_selected", "restore_selected")

    def get_actions(self, request):
        """The admin's own actions, and archiving (mixed in before it, so added here)."""
        found = super().get_actions(request)
        for name in self.ARCHIVING:
            found.setdefault(name, self.get_action(name))
        return found

    def _archive(self, request, queryset, archived: bool) -> None:
        done = 0
        for org_id in set(queryset.values_list("organization_id", flat=True)):
            if user_has_role(request.user, org_id, "ops"):
                done += records_archive(model=queryset.model, organization_id=org_id, by=request.user,
                                        ids=list(queryset.filter(organization_id=org_id).values_list("pk", flat=True)),
                                        archived=archived)
        what = "Archived" if archived else "Restored"
        self.message_user(request, f"{what} {done} record(s).", messages.SUCCESS)  # type: ignore[attr-defined]

    @admin.action(description="Archive the selected records")
    def archive_selected(self, request, queryset) -> None:
        self._archive(request, queryset, True)

    @admin.action(description="Restore the selected archived records")
    def restore_selected(self, request, queryset) -> None:
        self._archive(request, queryset, False)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "plan", "ai_monthly_token_budget", "created_at")
    list_filter = ("plan",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role")
    list_filter = ("role", "organization")
    list_select_related = ("user", "organization")
    search_fields = ("user__username", "organization__name")


@admin.register(Stage)
class StageAdmin(OrgScopedAdmin):
    list_display = ("name", "slug", "organization", "order", "is_won", "is_lost")
    list_filter = ("organization",)
    edit_role = add_role = "admin"


class InUseGuard:
    """Rows whose delete() refuses while a live workflow uses them (an organization's own field, an
    event it declared): kept, and the page says which workflows."""

    def delete_model(self, request, obj):
        try:
            obj.delete()
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)

    def delete_queryset(self, request, queryset):
        for row in queryset:
            self.delete_model(request, row)


@admin.register(CustomField)
class CustomFieldAdmin(InUseGuard, OrgScopedAdmin):
    """An organization's own fields on deals, leads and contacts (crm/custom_fields.py)."""

    list_display = ("label", "entity", "key", "kind", "organization")
    list_filter = ("entity", "kind", "organization")
    search_fields = ("label", "key")
    edit_role = add_role = "admin"

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return [*fields, "entity", "key", "kind"] if obj is not None else fields

    def delete_view(self, request, object_id, extra_context=None):
        """A field a live workflow reads is not deleted: the page says which workflows."""
        field = self.get_object(request, object_id)
        users = used_by(field) if field is not None else []
        if users:
            self.message_user(request, f"“{field.label}” is used by the live workflow(s) {', '.join(users)}: change "
                                       "them (or pause and archive them) first.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:crm_customfield_change", args=[field.pk]))
        return super().delete_view(request, object_id, extra_context)



@admin.register(Contact)
class ContactAdmin(Archivable, OrgScopedAdmin):
    list_display = ("__str__", "email", "company", "organization")
    list_filter = (ArchivedFilter, "organization")
    readonly_fields = ("archived_at",)
    search_fields = ("first_name", "last_name", "email", "company")
    list_select_related = ("organization",)


@admin.register(Deal)
class DealAdmin(Archivable, OrgScopedAdmin):
    list_display = ("title", "stage", "amount", "probability", "contact", "owner", "organization")
    list_filter = (StageFilter, ArchivedFilter, "organization")
    readonly_fields = ("archived_at",)
    search_fields = ("title",)
    list_select_related = ("stage", "contact", "owner", "organization")
    show_full_result_count = False


@admin.register(Lead)
class LeadAdmin(Archivable, OrgScopedAdmin):
    list_display = ("name", "email", "company", "status", "source", "converted_at", "organization")
    list_filter = ("status", "source", ArchivedFilter, "organization")
    search_fields = ("name", "email", "company")
    list_select_related = ("organization",)
    readonly_fields = ("converted_at", "converted_contact", "converted_deal", "archived_at")
    actions = ["convert_leads"]

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return [*fields, "status"] if obj is not None and obj.converted_at is not None else fields

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "status":  # "Converted" comes only from converting the lead
            kwargs["choices"] = [c for c in db_field.choices if c[0] != Lead.Status.CONVERTED]
            kwargs["help_text"] = "To convert a lead, use “Convert selected leads” in the lead list."
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    @admin.action(description="Convert selected leads to contacts and deals")
    def convert_leads(self, request, queryset) -> None:
        converted = 0
        for org_id in set(queryset.values_list("organization_id", flat=True)):
            if not user_has_role(request.user, org_id, self.edit_role):
                continue
            ids = list(queryset.filter(organization_id=org_id).values_list("pk", flat=True))
            converted += leads_convert_bulk(organization_id=org_id, lead_ids=ids)
        skipped = queryset.count() - converted
        self.message_user(request, f"Converted {converted} lead(s); {skipped} skipped "
                                   "(already converted or not yours to change).", messages.SUCCESS)


@admin.register(Task)
class TaskAdmin(OrgScopedAdmin):
    list_display = ("title", "status", "priority", "due_date", "assignee", "deal_link", "project", "organization")
    list_filter = ("status", "priority", "organization")
    search_fields = ("title",)
    list_select_related = ("assignee", "deal", "project", "organization")
    readonly_fields = ("automation_key",)

    @admin.display(description="Deal")
    def deal_link(self, obj):
        if obj.deal_id is None:
            return "-"
        return format_html("<a href='{}'>{}</a>", reverse("admin:crm_deal_change", args=[obj.deal_id]),
                           obj.deal.title)


@admin.register(Project)
class ProjectAdmin(Archivable, OrgScopedAdmin):
    list_display = ("name", "status", "service_type", "contact", "deal", "owner", "end_date", "organization")
    list_filter = ("status", ArchivedFilter, "organization")
    search_fields = ("name", "service_type")
    list_select_related = ("contact", "deal", "owner", "organization")
    readonly_fields = ("automation_key", "archived_at")


@admin.register(Note)
class NoteAdmin(OrgScopedAdmin):
    list_display = ("__str__", "deal", "lead", "contact", "project", "author", "created_at", "organization")
    search_fields = ("body",)
    list_select_related = ("deal", "lead", "contact", "project", "author", "organization")
    readonly_fields = ("automation_key",)


@admin.register(EventType)
class EventTypeAdmin(InUseGuard, OrgScopedAdmin):
    """The organization's own business events (crm/business_events.py); the predeclared ones are
    listed on the Events page and by the API."""

    list_display = ("name", "about", "description", "organization")
    list_filter = ("about", "organization")
    search_fields = ("name", "description")
    edit_role = add_role = "admin"

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return [*fields, "name"] if obj is not None else fields


@admin.register(BusinessEvent)
class BusinessEventAdmin(OrgScopedAdmin):
    """Events other systems sent, as they were accepted (read-only)."""

    list_display = ("name", "received_at", "source", "contact", "idempotency_key", "organization")
    list_filter = ("name", "source", "organization")
    search_fields = ("name", "idempotency_key")
    list_select_related = ("contact", "organization")
    readonly_fields = ("name", "idempotency_key", "data", "contact", "deal", "lead", "project", "source", "sent_by",
                       "received_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class SmsSettingsForm(ConcurrentEditForm):
    """The auth token is written, never shown: an empty box keeps the one stored."""

    token = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                            label="Auth token", help_text="Twilio: the account's auth token (it also checks the "
                                                          "signatures of what Twilio sends back). Stored encrypted; "
                                                          "leave empty to keep the current one.")

    class Meta:
        model = SmsSettings
        fields = ["organization", "provider", "from_number", "account_sid", "quiet_start", "quiet_end"]


@admin.register(SmsSettings)
class SmsSettingsAdmin(OrgScopedAdmin):
    """An organization's SMS sender (crm/sms): admins set it; the URLs to give the provider are shown."""

    form = SmsSettingsForm
    list_display = ("organization", "provider", "from_number", "quiet_start", "quiet_end")
    readonly_fields = ("callback_urls",)
    edit_role = add_role = "admin"

    @admin.display(description="Give the provider these URLs")
    def callback_urls(self, obj) -> str:
        if obj is None or obj.pk is None:
            return "Shown once saved."
        return format_html("Status callback: <code>{}</code><br>Incoming messages: <code>{}</code>",
                           sms_callback_url(obj), sms_callback_url(obj).replace("/status/", "/inbound/"))

    def save_model(self, request, obj, form, change) -> None:
        token = form.cleaned_data.get("token")
        if token:
            obj.auth_token = token
        elif not obj.auth_token:  # the test provider signs its callbacks with one of its own
            obj.auth_token = secrets.token_urlsafe(24)
        # (The token is not a form field: the whole row is saved, by an admin of its organization.)
        obj.full_clean()
        obj.save()


@admin.register(SmsMessage)
class SmsMessageAdmin(OrgScopedAdmin):
    list_display = ("to", "status", "delivery", "segments", "sent_at", "created_at", "organization")
    list_filter = ("status", "delivery", "organization")
    search_fields = ("to", "body", "provider_id")
    list_select_related = ("organization",)
    readonly_fields = ("to", "from_number", "body", "segments", "encoding", "status", "delivery", "provider_id",
                       "error", "attempts", "sent_at", "contact", "deal", "lead", "project", "automation_key")
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False  # the outbox is a log: SMS come from workflows

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SmsInbound)
class SmsInboundAdmin(OrgScopedAdmin):
    list_display = ("from_number", "kind", "body", "received_at", "organization")
    list_filter = ("kind", "organization")
    search_fields = ("from_number", "body")
    readonly_fields = ("provider_id", "from_number", "body", "kind", "received_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(EmailMessage)
class EmailMessageAdmin(OrgScopedAdmin):
    list_display = ("subject", "to", "status", "sent_at", "created_at", "organization")
    list_filter = ("status", "organization")
    search_fields = ("to", "subject")
    list_select_related = ("organization",)
    readonly_fields = ("status", "sent_at", "error", "attempts", "automation_key", "deal", "lead")
    show_full_result_count = False
    actions = ["resend", "resend_unknown"]

    def has_add_permission(self, request) -> bool:
        return False  # the outbox is a log: emails come from workflows

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def _resend(self, request, queryset, *, include_unknown: bool) -> tuple[int, int, int]:
        sent = failed = skipped = 0
        for email in queryset:
            try:
                email = email_resend(email_id=email.pk, by=request.user, include_unknown=include_unknown)
            except PermissionDenied:
                skipped += 1
                continue
            sent += email.status == EmailMessage.Status.SENT
            failed += email.status != EmailMessage.Status.SENT
        return sent, failed, skipped

    def _report(self, request, sent: int, failed: int, skipped: int) -> None:
        text = f"Sent {sent} email(s) again."
        if failed:
            text += f" {failed} failed again: see their error."
        if skipped:
            text += f" {skipped} skipped (not yours to send)."
        self.message_user(request, text, messages.SUCCESS if sent and not failed else messages.WARNING)

    @admin.action(description="Send selected failed emails again")
    def resend(self, request, queryset) -> None:
        failed = queryset.filter(status=EmailMessage.Status.FAILED)
        others = queryset.count() - failed.count()
        self._report(request, *self._resend(request, failed, include_unknown=False))
        if others:
            self.message_user(request, f"{others} selected email(s) were not failed and were left alone; an email "
                                       "whose outcome is unknown is resent only with “Resend emails whose outcome "
                                       "is unknown”.", messages.WARNING)

    @admin.action(description="Resend emails whose outcome is unknown (may reach the client twice)…")
    def resend_unknown(self, request, queryset):
        unknown = queryset.filter(status=EmailMessage.Status.UNKNOWN)
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(request, "admin/crm/emailmessage/confirm_resend_unknown.html", {
                **self.admin_site.each_context(request), "title": "Resend emails whose outcome is unknown?",
                "emails": list(unknown[:200]), "opts": self.model._meta,
                "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            })
        self._report(request, *self._resend(request, unknown, include_unknown=True))
        return None


class ReadFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "read"

    def lookups(self, request, model_admin):
        return [("no", "Unread"), ("yes", "Read")]

    def queryset(self, request, queryset):
        if self.value() in ("no", "yes"):
            return queryset.filter(read_at__isnull=self.value() == "no")  # uses the (user, read_at) index
        return queryset


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """A person's inbox: their own notifications, in the organizations they still belong to
    (someone who left an organization no longer reads its deal titles). Superusers see all.
    Notifications come from workflows and the system, so nothing is added or edited here."""

    list_display = ("title", "created_at", "read_state", "open_link")
    list_filter = (ReadFilter,)
    list_select_related = ("user", "organization")
    search_fields = ("title",)
    readonly_fields = ("organization", "user", "title", "body", "open_link", "created_at", "read_at", "run_id",
                       "automation_key")
    fields = readonly_fields
    actions = ["mark_read"]
    show_full_result_count = False

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(user=request.user, organization_id__in=list(user_org_roles(request.user)))

    def get_list_display(self, request):
        if request.user.is_superuser:  # the only one who sees other people's notifications
            return (*self.list_display, "user", "organization")
        return self.list_display

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None) -> bool:
        if not (request.user.is_active and request.user.is_staff):
            return False
        # The queryset already hides other people's rows; this also covers a direct object URL.
        return obj is None or request.user.is_superuser or obj.user_id == request.user.pk

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Read", boolean=True, ordering="read_at")
    def read_state(self, obj: Notification) -> bool:
        return obj.is_read

    @admin.display(description="Link")
    def open_link(self, obj: Notification) -> str:
        # Only a path of this site is linked: a notification never sends a person elsewhere.
        if not obj.link.startswith("/") or obj.link.startswith("//"):
            return "-"
        return format_html("<a href='{}'>Open</a>", obj.link)

    @admin.action(description="Mark as read")
    def mark_read(self, request, queryset) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        marked = notifications_mark_read(user=request.user, notification_ids=ids)
        text = f"Marked {marked} notification(s) as read."
        if marked < len(ids):
            text += f" {len(ids) - marked} left as they were (already read, or someone else's to read)."
        self.message_user(request, text, messages.SUCCESS)
