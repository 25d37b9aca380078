from datetime import date
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from crm_automation.automation import catalog
from crm_automation.automation.actions.base import Action, ActionFailed, ExecutionContext
from crm_automation.automation.models import FieldChange
from crm_automation.crm.models import Deal, Lead, Stage
from crm_automation.crm.services import deal_move_to_stage


def _target(trigger_type: str, field: str) -> tuple[str, str]:
    """("deal" | "lead", field name) for a config field such as "probability" or "deal.title"."""
    entity = catalog.TRIGGER_ENTITY.get(trigger_type, "deal")
    if "." in field:
        prefix, _, name = field.partition(".")
        if prefix == "deal" and trigger_type == catalog.LEAD_CONVERTED:
            return "deal", name
        if prefix == entity:
            return entity, name
        return "", field
    return entity, field


def coerce(kind: str, value, *, organization_id: int):
    """The value as the field's type, or ValueError saying why not."""
    if kind == "str":
        text = str(value)
        if len(text) > 200:
            raise ValueError("must be at most 200 characters")
        return text
    if kind == "number":
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
        if not number.is_finite() or abs(number) >= Decimal("1e12"):
            raise ValueError(f"{value!r} is out of range")
        return number.quantize(Decimal("0.01"))
    if kind == "percent":
        if isinstance(value, bool) or not str(value).strip().isdigit() or not 0 <= int(str(value)) <= 100:
            raise ValueError(f"{value!r} is not a whole number from 0 to 100")
        return int(str(value))
    if kind == "date":
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    if kind == "email":
        try:
            validate_email(str(value))
        except ValidationError:
            raise ValueError(f"{value!r} is not an email address") from None
        return str(value)
    if kind == "lead_status":
        if value not in Lead.Status.values:
            raise ValueError(f"{value!r} is not a lead status ({', '.join(Lead.Status.values)})")
        return value
    if kind == "stage":
        stage = Stage.objects.filter(organization_id=organization_id, slug=value).first()
        if stage is None:
            raise ValueError(f"{value!r} is not a stage of this organization")
        return stage
    raise ValueError(f"unsupported field type {kind}")


def _as_json(value):
    if isinstance(value, Decimal | date):
        return str(value)
    if isinstance(value, Stage):
        return value.slug
    return value


class UpdateField(Action):
    type = "update_field"
    label = "Update field"
    required = ("field", "value")

    def validate(self, config, *, trigger_type, organization_id):
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if errors or not isinstance(config, dict):
            return errors
        entity, name = _target(trigger_type, str(config["field"]))
        fields = catalog.UPDATABLE_FIELDS.get(entity, {})
        if name not in fields:
            allowed = ", ".join(sorted(fields)) or "none"
            return [("config.field", f"{config['field']!r} cannot be updated; allowed: {allowed}")]
        value = config["value"]
        if isinstance(value, str) and "{{" in value:
            if fields[name] != "str":
                errors.append(("config.value", "templates are only allowed for text fields"))
            return errors
        try:
            coerce(fields[name], value, organization_id=organization_id)
        except ValueError as exc:
            errors.append(("config.value", str(exc)))
        return errors

    def execute(self, config, ctx: ExecutionContext) -> dict:
        done = FieldChange.objects.filter(automation_key=ctx.key).first()
        if done is not None:
            return {"field": done.field, "old": done.old_value, "new": done.new_value,
                    "repeated_delivery": True}
        entity, name = _target(ctx.trigger_type, str(config["field"]))
        kind = catalog.UPDATABLE_FIELDS[entity][name]
        record = ctx.record
        if entity == "deal" and isinstance(record, Lead):
            record = record.converted_deal
        if record is None:
            raise ActionFailed(f"there is no {entity} to update")
        raw = config["value"]
        if isinstance(raw, str) and "{{" in raw:
            raw = ctx.render("value", raw)
        try:
            value = coerce(kind, raw, organization_id=ctx.organization_id)
        except ValueError as exc:
            raise ActionFailed(f"{name}: {exc}") from None
        # Lock the row so two workflows updating the same record do not interleave.
        model = Deal if entity == "deal" else Lead
        record = model.objects.select_for_update().get(pk=record.pk)
        old = getattr(record, name)
        if kind == "stage":
            old = record.stage.slug
            deal_move_to_stage(deal=record, stage=value)
        else:
            setattr(record, name, value)
            record.save(update_fields=[name, "updated_at"])
        FieldChange.objects.create(
            organization_id=ctx.organization_id, entity_type=entity, entity_id=record.pk, field=name,
            old_value=_as_json(old), new_value=_as_json(value), run_id=ctx.run_id,
            automation_key=ctx.key,
        )
        return {"field": f"{entity}.{name}", "old": _as_json(old), "new": _as_json(value)}
