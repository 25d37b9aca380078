"""Workflows over the API: the workflow document (docs/product.md#documents) as JSON plus what
only the server knows.

The document is read and checked by `versioning.parse_document` (the same code as YAML
import); the serializers here describe it for the OpenAPI schema, shape request bodies into a
document, and look up the records a body names in the caller's organization.
"""


from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from crm_automation.automation.definition import catalog
from crm_automation.automation.models import Workflow, WorkflowStatus
from crm_automation.automation.services.versions import workflow_document
from crm_automation.automation.services.workflows import has_unpublished_changes, name_problems
from crm_automation.crm.selectors import RECORD_MODELS, record_in

# What GET adds to the document: a body sent back as it was read is still a valid document.
READ_ONLY = ("status", "trigger_type", "version", "draft_revision", "has_unpublished_changes", "allows_deletion",
             "minutes_saved", "run_count",
             "success_count", "failure_count", "success_rate", "median_duration_ms", "last_run_at",
             "created_at", "updated_at", "_status")


class NodeDataSerializer(serializers.Serializer):
    subtype = serializers.CharField(help_text="chat-app | manual | schedule (the trigger), tool-call, condition, "
                                              "wait, parallel, merge, loop, user-input, function, "
                                              "desktop-notification, sub-workflow …")
    label = serializers.CharField(help_text="Unique in the workflow; templates refer to nodes by label.")  # type: ignore[assignment]  # (a declared field: DRF takes it out of the class, the attribute stays the base's)
    config = serializers.DictField(required=False, help_text="The node's settings (a tool-call's arguments are "
                                                             "in config.defaults).")
    onError = serializers.DictField(required=False, help_text='e.g. {"policy": "retry", "maxAttempts": 4}')


class NodeSerializer(serializers.Serializer):
    id = serializers.SlugField(help_text="kebab-case, stable across versions")
    type = serializers.ChoiceField(choices=["workflow"])
    data = NodeDataSerializer()  # type: ignore[assignment]  # (a declared field: DRF takes it out of the class, the attribute stays the base's)


class EdgeSerializer(serializers.Serializer):
    source = serializers.CharField()  # type: ignore[assignment]  # (a declared field: DRF takes it out of the class, the attribute stays the base's)
    target = serializers.CharField()
    sourceHandle = serializers.CharField(required=False, help_text="condition-true, branch-0, approved …")


class SettingsSerializer(serializers.Serializer):
    errorPolicy = serializers.ChoiceField(choices=["abort", "skip", "pause"], required=False)
    reenrollment = serializers.ChoiceField(choices=Workflow.Reenrollment.values, required=False)
    timeoutSeconds = serializers.IntegerField(min_value=1, max_value=3600, required=False)


class WorkflowSerializer(serializers.Serializer):
    """A workflow: its document (as saved now: a live workflow's unpublished edits included)
    and, read-only, its state and figures. `median_duration_ms` is the median of its last
    1,000 finished runs (simulations aside); `success_rate` is successes / runs (0..1)."""

    id = serializers.IntegerField(read_only=True)
    key = serializers.SlugField(required=False, max_length=70,
                                help_text="The document's id (kebab-case, unique in the organization); "
                                          "from the name when left out. A YAML body names it `id`.")
    name = serializers.CharField(max_length=200, help_text="Unique in the organization, whatever the case; a "
                                                           "longer or taken name is refused at this field.")
    description = serializers.CharField(required=False, allow_blank=True)
    settings = SettingsSerializer(required=False)
    nodes = NodeSerializer(many=True)
    edges = EdgeSerializer(many=True)
    status = serializers.ChoiceField(choices=WorkflowStatus.choices, read_only=True)
    trigger_type = serializers.CharField(read_only=True)
    version = serializers.IntegerField(read_only=True, help_text="The live version's number.")
    draft_revision = serializers.IntegerField(
        read_only=True, help_text="Send it back (or as If-Match) with a PATCH of the nodes: if someone saved "
                                  "other changes since, yours are refused instead of overwriting theirs.")
    has_unpublished_changes = serializers.BooleanField(read_only=True)
    allows_deletion = serializers.BooleanField(read_only=True, help_text="An admin allowed its “Delete a record” "
                                                                         "steps (POST …/allow-deletion/).")
    minutes_saved = serializers.IntegerField(read_only=True, help_text="Minutes of manual work one completed run "
                                                                       "replaces (POST …/time-saved/); 0: not counted.")
    run_count = serializers.IntegerField(read_only=True)
    success_count = serializers.IntegerField(read_only=True)
    failure_count = serializers.IntegerField(read_only=True)
    success_rate = serializers.FloatField(read_only=True, allow_null=True)
    median_duration_ms = serializers.IntegerField(read_only=True, allow_null=True)
    last_run_at = serializers.DateTimeField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, workflow: Workflow) -> dict:
        document = workflow_document(workflow)
        document.pop("_status", None)
        key = document.pop("id")
        document = {"name": document.pop("name"), "description": document.pop("description", ""), **document}
        rate = round(workflow.success_count / workflow.run_count, 4) if workflow.run_count else None
        return {
            "id": workflow.pk, "key": key, **document,
            "status": workflow.status, "trigger_type": workflow.trigger_type, "version": workflow.version,
            "draft_revision": workflow.draft_revision, "has_unpublished_changes": has_unpublished_changes(workflow),
            "allows_deletion": workflow.allows_deletion, "minutes_saved": workflow.minutes_saved,
            "run_count": workflow.run_count, "success_count": workflow.success_count,
            "failure_count": workflow.failure_count, "success_rate": rate,
            "median_duration_ms": self.context.get("medians", {}).get(workflow.pk),
            "last_run_at": serializers.DateTimeField().to_representation(workflow.last_run_at)
            if workflow.last_run_at else None,
            "created_at": serializers.DateTimeField().to_representation(workflow.created_at),
            "updated_at": serializers.DateTimeField().to_representation(workflow.updated_at),
        }


def document_of_body(data) -> tuple[object, object, int | None]:
    """(workflow document, its YAML tree or None, the draft revision it was edited from) of a
    request body: the read-only fields a GET adds are dropped, `key` becomes the document's
    `id`, and a numeric `id` (the API's own) is not taken for one."""
    tree = getattr(data, "tree", None)
    if not isinstance(data, dict):
        return data, tree, None
    document = {k: v for k, v in data.items() if k not in READ_ONLY and k != "draft_revision"}
    if "key" in document:
        document["id"] = document.pop("key")
    elif not isinstance(document.get("id"), str):
        document.pop("id", None)
    revision = data.get("draft_revision")
    return document, tree, revision if isinstance(revision, int) and not isinstance(revision, bool) else None


class WorkflowFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=WorkflowStatus.choices, required=False)
    trigger_type = serializers.ChoiceField(choices=sorted({*catalog.TRIGGER_TYPES, *catalog.LATER_TRIGGERS}),
                                           required=False)


class VersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    created_by = serializers.SerializerMethodField()
    current = serializers.SerializerMethodField(help_text="The version new triggers run.")

    def get_created_by(self, version) -> str | None:
        return version.created_by.get_username() if version.created_by_id else None

    def get_current(self, version) -> bool:
        return version.pk == self.context["workflow"].current_version_id


class DiffQuerySerializer(serializers.Serializer):
    to = serializers.IntegerField(min_value=1, max_value=2**31 - 1, help_text="The newer version's number.")
    # `from` is a Python keyword, so it is declared through the class namespace.
    vars()["from"] = serializers.IntegerField(min_value=1, max_value=2**31 - 1,
                                              help_text="The older version's number.")


@extend_schema_field({"type": "array", "items": {"type": "object", "properties": {
    "before": {"type": "object"}, "after": {"type": "object"}}}})
class ChangedNodesField(serializers.Field):
    def to_representation(self, value):
        return [{"before": before, "after": after} for before, after in value]


@extend_schema_field({"type": "array", "items": {"type": "object", "properties": {
    "source": {"type": "string"}, "target": {"type": "string"}, "sourceHandle": {"type": "string", "nullable": True}}}})
class EdgeTuplesField(serializers.Field):
    def to_representation(self, value):
        return [{"source": source, "target": target, "sourceHandle": handle} for source, target, handle in value]


class DiffSerializer(serializers.Serializer):
    nodes_added = serializers.ListField(child=serializers.DictField())
    nodes_removed = serializers.ListField(child=serializers.DictField())
    nodes_changed = ChangedNodesField()
    nodes_moved = serializers.ListField(child=serializers.CharField(), help_text=(
        "Ids of nodes that only moved on the canvas (their position), doing the same as before."))
    edges_added = EdgeTuplesField()
    edges_removed = EdgeTuplesField()
    settings_changed = serializers.BooleanField()
    text = serializers.CharField(help_text="A unified diff of the two YAML documents.")


def record_named(kind: str, raw: object, organization):
    """The organization's record of that kind with this id (a contact's is a number), or a 400
    at entity_id: another organization's record is as unknown as one that never existed."""
    record = record_in(organization.pk, kind, raw)
    if record is None:
        raise serializers.ValidationError({"entity_id": f"No {kind} with this id in your organization."})
    return record


class RecordSerializer(serializers.Serializer):
    """A deal, lead, contact or project of the caller's organization (context: organization)."""

    entity_type = serializers.ChoiceField(choices=list(RECORD_MODELS))
    entity_id = serializers.CharField(max_length=64)

    def validate(self, attrs):
        return {**attrs, "record": record_named(attrs["entity_type"], attrs["entity_id"], self.context["organization"])}


class TriggerSerializer(serializers.Serializer):
    """The record a workflow starts on (a deal, lead, contact or project of the caller's
    organization; none for a workflow started without a record or on a schedule), its inputs and
    why it is started now."""

    entity_type = serializers.ChoiceField(choices=["deal", "lead", "contact", "project"], required=False)
    entity_id = serializers.CharField(required=False, max_length=64)
    input = serializers.DictField(required=False, help_text=(
        "The workflow's inputs (its trigger's `inputs`: checked by kind, defaults fill what is left out), read "
        "as {{trigger.input.x}}; for a business event's workflow, the event's data (checked against its "
        "declaration)."))
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, help_text=(
        "Why it is started now (kept with the run: metadata.reason). Required for a workflow that is not started "
        "by a person."))

    def validate(self, attrs):
        kind = attrs.get("entity_type")
        if kind is None:
            if attrs.get("entity_id"):
                raise serializers.ValidationError({"entity_type": "Say which kind of record entity_id is."})
            return {**attrs, "record": None}
        return {**attrs, "record": record_named(kind, attrs.get("entity_id"), self.context["organization"])}


class RunTestSerializer(RecordSerializer):
    """The record to simulate on (optional: the first record that would start the workflow now,
    when left out), the version, a business event's data, and the page of candidates."""

    entity_type = serializers.ChoiceField(choices=list(RECORD_MODELS), required=False)
    entity_id = serializers.CharField(max_length=64, required=False)
    candidates_cursor = serializers.CharField(required=False, allow_blank=True, max_length=64, help_text=(
        "The candidates' next page: `candidates_page.next_cursor` of the previous answer."))
    candidates_limit = serializers.IntegerField(required=False, min_value=1, max_value=50, default=50,
                                                help_text="Candidates per page (at most 50).")
    version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1,
                                       help_text="The version to simulate; the latest when left out.")
    data = serializers.DictField(required=False, help_text=(  # type: ignore[assignment]
        "A business event's data to simulate it with (its declaration's sample when left out)."))

    def validate(self, attrs):
        kind, given = attrs.get("entity_type"), attrs.get("entity_id")
        if kind is None and not given:
            return {**attrs, "record": None}
        if kind is None:
            raise serializers.ValidationError({"entity_type": "Say which kind of record entity_id is."})
        if not given:
            raise serializers.ValidationError({"entity_id": "Say which record (or leave entity_type out too)."})
        return super().validate(attrs)


class CloneSerializer(serializers.Serializer):
    """The copy's name: the person's choice must be free in the organization (whatever its
    case); without one it is “Copy of X”, “Copy of X (2)” …"""

    name = serializers.CharField(required=False, help_text="At most 200 characters, unique in the organization "
                                                           "(whatever the case); “Copy of …” when left out.")

    def validate_name(self, name: str) -> str:
        organization_id = self.context.get("organization_id")
        problems = name_problems(organization_id, name) if organization_id else []
        if problems:
            raise serializers.ValidationError(problems[0][1][:1].upper() + problems[0][1][1:] + ".")
        return name.strip()


class RollbackSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
