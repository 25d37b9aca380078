from dataclasses import dataclass, field

from crm_automation.automation import catalog
from crm_automation.automation.templating import MAX_TEMPLATE, Rendered, render, template_paths


class ActionFailed(Exception):
    """An action could not do its work; the message is shown to the ops user."""


@dataclass
class ExecutionContext:
    run_id: int
    position: int
    organization_id: int
    trigger_type: str
    depth: int  # depth of the triggering event (the loop guard's counter)
    template_context: dict
    record: object  # the triggering Deal or Lead
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"run:{self.run_id}:step:{self.position}"

    def render(self, name: str, template: str) -> str:
        rendered: Rendered = render(template, self.template_context)
        for path in rendered.unresolved:
            self.notes.append(f"{name}: {{{{{path}}}}} is not a known value and rendered empty")
        if rendered.truncated:
            self.notes.append(f"{name}: output was cut to {len(rendered.text)} characters")
        return rendered.text


class Action:
    """One kind of step. The engine runs steps of many runs together, so an action works in
    three parts: `prepare` one item (render and check, no writes), `apply` a list of prepared
    items with bulk writes, and `existing` to find effects already made under the same keys
    (a redelivered run). External actions also `deliver` after the transaction commits."""

    type: str = ""
    label: str = ""
    external = False
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    templated: tuple[str, ...] = ()

    def validate(self, config, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        if not isinstance(config, dict):
            return [("config", "must be an object")]
        errors = []
        allowed = set(self.required) | set(self.optional)
        for name in sorted(set(config) - allowed):
            errors.append((f"config.{name}", f"unknown setting; {self.type} takes {', '.join(sorted(allowed))}"))
        for name in self.required:
            if config.get(name) in (None, ""):
                errors.append((f"config.{name}", "is required"))
        known = catalog.fields_for(trigger_type)
        for name in self.templated:
            value = config.get(name)
            if value is None:
                continue
            if not isinstance(value, str):
                errors.append((f"config.{name}", "must be text"))
                continue
            if len(value) > MAX_TEMPLATE:
                errors.append((f"config.{name}", f"is longer than {MAX_TEMPLATE} characters"))
            for path in template_paths(value):
                if path not in known:
                    errors.append((f"config.{name}", f"{{{{{path}}}}} is not a field this trigger provides"))
        return errors

    def prepare(self, config: dict, ctx: ExecutionContext):
        raise NotImplementedError

    def apply(self, items: list[tuple[ExecutionContext, object]]) -> list[dict]:
        """Write the prepared items; return one result per item, in order."""
        raise NotImplementedError

    def existing(self, keys: list[str]) -> dict[str, dict]:
        """Results of effects already made under these keys."""
        raise NotImplementedError

    def deliver(self, items: list[tuple[ExecutionContext, dict]]) -> list[tuple[bool, dict, str]]:
        """External work after commit: (ok, result, error) per item."""
        return [(True, result, "") for _, result in items]
