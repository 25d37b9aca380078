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
    type: str = ""
    label: str = ""
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

    def execute(self, config: dict, ctx: ExecutionContext) -> dict:
        raise NotImplementedError

    def after_commit(self, result: dict, ctx: ExecutionContext) -> tuple[bool, dict, str]:
        """Work that must happen outside the transaction (e.g. talking to a mail provider)."""
        return True, result, ""
