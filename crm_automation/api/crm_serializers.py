"""CRM records as JSON. Serializers only check the shape of input and write out records; the
views hand what they validated to the services in crm/services.py, which check roles, links
and the models' own rules."""

from collections.abc import Mapping

from rest_framework import serializers

from crm_automation.api.crm_fields import ContactLink, DealLink, LeadLink, MemberLink, ProjectLink, StageLink
from crm_automation.automation.models import WorkflowDecision, WorkflowRun
from crm_automation.crm.models import BusinessEvent, Contact, CustomField, Deal, EventType, Lead, Project, Stage, Task

# Keys the browsable API's HTML forms add to a body: not fields of a record.
FORM_KEYS = {"csrfmiddlewaretoken"}


class RecordSerializer(serializers.ModelSerializer):
    """A record in, a record out. An unknown field is an error rather than silently dropped (a
    typo in an integration would otherwise look like a successful write); read-only fields
    are accepted and ignored, so a record fetched with GET can be sent back with PUT."""

    expected = serializers.DictField(
        write_only=True, required=False,
        help_text="Updates only: the values you read before changing them (field → value). A field "
                  "that someone else changed since is refused (409, naming the field) instead of being "
                  "overwritten.")

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(str(name)[:80] for name in data if name not in self.fields and name not in FORM_KEYS)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown[:20]})
        return super().to_internal_value(data)

    def validate_expected(self, value: dict) -> dict:
        if self.instance is None:
            raise serializers.ValidationError("Only an update has values to expect.")
        seen = type(self)(self.instance, data={k: v for k, v in value.items() if k != "expected"}, partial=True,
                          context=self.context)
        if not seen.is_valid():
            raise serializers.ValidationError(seen.errors)
        return dict(seen.validated_data)

    def values(self) -> tuple[dict, dict | None]:
        """(the fields to write, the values the caller expects to find) for a service."""
        data = dict(self.validated_data)
        return data, data.pop("expected", None)


class StageSerializer(RecordSerializer):
    class Meta:
        model = Stage
        fields = ["id", "slug", "name", "order", "is_won", "is_lost", "expected"]


class ContactSerializer(RecordSerializer):
    class Meta:
        model = Contact
        fields = ["id", "first_name", "last_name", "email", "phone", "company", "custom", "source_lead", "archived_at",
                  "created_at", "expected"]
        read_only_fields = ["source_lead", "archived_at", "created_at"]


class DealSerializer(RecordSerializer):
    stage = StageLink()
    contact = ContactLink(required=False, allow_null=True)
    owner = MemberLink(required=False, allow_null=True)

    class Meta:
        model = Deal
        fields = ["id", "title", "amount", "stage", "probability", "contact", "owner", "close_date", "custom",
                  "source_lead", "archived_at",
                  "created_at", "updated_at", "expected"]
        read_only_fields = ["source_lead", "archived_at", "created_at", "updated_at"]


class LeadSerializer(RecordSerializer):
    owner = MemberLink(required=False, allow_null=True)

    class Meta:
        model = Lead
        fields = ["id", "name", "email", "company", "status", "source", "custom", "owner", "converted_at",
                  "converted_contact",
                  "converted_deal", "archived_at", "created_at", "updated_at", "expected"]
        read_only_fields = ["converted_at", "converted_contact", "converted_deal", "archived_at", "created_at",
                            "updated_at"]


class TaskSerializer(RecordSerializer):
    assignee = MemberLink(required=False, allow_null=True)
    deal = DealLink(required=False, allow_null=True)
    lead = LeadLink(required=False, allow_null=True)
    project = ProjectLink(required=False, allow_null=True)

    class Meta:
        model = Task
        fields = ["id", "title", "description", "due_date", "priority", "status", "assignee", "deal", "lead",
                  "project", "automation_key", "created_at", "expected"]
        read_only_fields = ["automation_key", "created_at"]


class ProjectSerializer(RecordSerializer):
    contact = ContactLink(required=False, allow_null=True)
    deal = DealLink(required=False, allow_null=True)
    owner = MemberLink(required=False, allow_null=True)

    class Meta:
        model = Project
        fields = ["id", "name", "status", "service_type", "contact", "deal", "owner", "start_date", "end_date",
                  "custom", "archived_at", "automation_key", "created_at", "updated_at", "expected"]
        read_only_fields = ["archived_at", "automation_key", "created_at", "updated_at"]


class LeadConvertSerializer(serializers.Serializer):
    stage = StageLink(required=False, help_text="The new deal's stage (default: the first open stage).")
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, required=False, min_value=0)


# --- What automation did with a record (read-only) ----------------------------------------------

class RecordRunSerializer(serializers.ModelSerializer):
    workflow_name = serializers.CharField(source="workflow.name", read_only=True)

    class Meta:
        model = WorkflowRun
        fields = ["id", "workflow", "workflow_name", "status", "trigger_type", "started_at", "finished_at",
                  "error", "simulated"]


class RecordDecisionSerializer(serializers.ModelSerializer):
    workflow_name = serializers.CharField(source="workflow.name", read_only=True)
    event_kind = serializers.CharField(source="event.kind", read_only=True)

    class Meta:
        model = WorkflowDecision
        fields = ["workflow", "workflow_name", "outcome", "reason", "event", "event_kind", "created_at"]


class RecordAutomationSerializer(serializers.Serializer):
    runs = RecordRunSerializer(many=True, help_text="The runs the record triggered, newest first.")
    decisions = RecordDecisionSerializer(
        many=True, help_text="Why each candidate workflow ran or not, for each change of the record, newest first.")


class CustomFieldSerializer(RecordSerializer):
    """One of the organization's own fields. Its record, key and kind never change (workflows name
    it by its key; values are stored by kind): rename the label instead."""

    class Meta:
        model = CustomField
        fields = ["id", "entity", "key", "label", "kind", "choices", "help_text", "position", "created_at",
                  "expected"]
        read_only_fields = ["created_at"]


class EventTypeSerializer(RecordSerializer):
    """An event of the organization's own catalog. Its name never changes (workflows and senders
    name the event by it)."""

    class Meta:
        model = EventType
        fields = ["id", "name", "description", "about", "fields", "created_at", "expected"]
        read_only_fields = ["created_at"]


class BusinessEventSerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="name", read_only=True)

    class Meta:
        model = BusinessEvent
        fields = ["id", "type", "idempotency_key", "data", "contact", "deal", "lead", "project", "source",
                  "received_at"]
        read_only_fields = fields

