"""Query parameters of the CRM lists: filters, search and ordering, each value checked first so
a bad one is a 400 that names it (never a database error on a malformed UUID or a NUL)."""

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from rest_framework import serializers
from rest_framework.filters import OrderingFilter, SearchFilter

from crm_automation.crm import custom_fields
from crm_automation.crm.models import Lead, Task


class Filters(serializers.Serializer):
    """Query parameters → queryset filters. `lookups`: parameter → ORM lookup."""

    lookups: dict[str, str] = {}

    def apply(self, queryset):
        return queryset.filter(**{self.lookups[name]: value for name, value in self.validated_data.items()})


def _username(**kwargs):
    return serializers.CharField(required=False, max_length=150, **kwargs)


class DealFilters(Filters):
    stage = serializers.SlugField(required=False, help_text="A stage's slug.")
    owner = _username(help_text="The owner's username.")
    contact = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    lookups = {"stage": "stage__slug", "owner": "owner__username", "contact": "contact_id"}


class LeadFilters(Filters):
    status = serializers.ChoiceField(required=False, choices=Lead.Status.choices)
    owner = _username(help_text="The owner's username.")
    lookups = {"status": "status", "owner": "owner__username"}


class TaskFilters(Filters):
    status = serializers.ChoiceField(required=False, choices=Task.Status.choices)
    priority = serializers.ChoiceField(required=False, choices=Task.Priority.choices)
    assignee = _username(help_text="The assignee's username.")
    deal = serializers.UUIDField(required=False)
    lead = serializers.UUIDField(required=False)
    lookups = {"status": "status", "priority": "priority", "assignee": "assignee__username", "deal": "deal_id",
               "lead": "lead_id"}


class BoundedSearch(SearchFilter):
    """`?search=` over the view's search_fields, with a size a database can always answer (each
    word is one more LIKE: ten thousand words would be a query SQLite refuses)."""

    longest, most_words = 200, 10

    def get_search_terms(self, request):
        raw = request.query_params.get(self.search_param, "")
        terms = super().get_search_terms(request)
        if len(raw) > self.longest or "\x00" in raw or len(terms) > self.most_words:
            raise serializers.ValidationError({self.search_param: [
                f"Search with at most {self.most_words} words and {self.longest} characters (no NUL)."]})
        return terms


class StableOrdering(OrderingFilter):
    """`?ordering=` among the view's ordering_fields, with the primary key last so that pages
    never repeat or skip rows that share a value."""

    def get_ordering(self, request, queryset, view):
        ordering = list(super().get_ordering(request, queryset, view) or ())
        return [*ordering, "pk"] if "pk" not in ordering else ordering

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        fields = ", ".join(view.ordering_fields)
        for parameter in parameters:
            parameter["description"] = (f"Sort by {fields}: one or more, comma-separated, “-” first for "
                                        f"descending (default {', '.join(view.ordering)}).")
        return parameters


def own_field_filter(organization_id: int, entity: str, wanted: dict[str, str]) -> dict:
    """`?custom.<key>=<value>` as the containment `custom @> {key: value}` (a GIN index answers it
    on PostgreSQL): the value normalized as it is stored ("gold" finds "Gold", "yes" finds true,
    one of a several-of field's choices finds the records that have it); 400 naming a bad one."""
    fields = custom_fields.definitions(organization_id, entity)
    contains: dict = {}
    errors = {}
    for name, raw in list(wanted.items())[:10]:
        key = name.removeprefix("custom.")
        field = fields.get(key)
        if field is None:
            errors[name] = [f"is not a field of this organization's {entity}s ({', '.join(sorted(fields)) or 'none'})"]
            continue
        try:
            value = custom_fields.value_of(field, [raw] if field.kind == "choices" else raw, organization_id)
        except ValueError as exc:
            errors[name] = [str(exc)]
            continue
        contains[key] = value
    if errors:
        raise serializers.ValidationError(errors)
    return contains


def with_own_fields(queryset, contains: dict):
    """Records whose own fields hold these values. PostgreSQL: one containment its GIN index
    answers. SQLite (no containment on JSON): each key compared, a list searched with json_each."""
    if connection.vendor == "postgresql":
        return queryset.filter(custom__contains=contains)
    table = queryset.model._meta.db_table
    for key, value in contains.items():  # (keys are checked: letters, digits and underscores)
        if isinstance(value, list):
            for item in value:
                queryset = queryset.filter(RawSQL(
                    f'EXISTS (SELECT 1 FROM json_each("{table}"."custom", %s) WHERE json_each.value = %s)',
                    (f"$.{key}", item), output_field=BooleanField()))
        else:
            queryset = queryset.filter(**{f"custom__{key}": value})
    return queryset
