from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from crm_automation.automation.definition import catalog
from crm_automation.automation.definition.templating import (
    MAX_TEMPLATE,
    Rendered,
    TemplateTooLong,
    missing_link,
    render,
    template_paths,
)

if TYPE_CHECKING:
    from crm_automation.crm.models import Deal, Lead

# A step's result as its row keeps it (JSON).
Result = dict[str, Any]
# A settled external effect: (ok, result, error).
Outcome = tuple[bool, Result, str]
# What an action's `prepare` makes for one step and its `apply` writes (a row to insert, a change).
Prepared = TypeVar("Prepared")


def effect_key(run_id: int, step: str) -> str:
    """The unique key of a step's side effect: a redelivered run finds it instead of repeating it.
    `step` is "node:<node id>", ":<token>" added in a loop (step_name)."""
    return f"run:{run_id}:{step}"


def step_name(node_id: str, token: str = "") -> str:
    return f"node:{node_id}:{token}" if token else f"node:{node_id}"


class ActionFailed(Exception):
    """An action could not do its work; the message is shown to the ops user."""


class NotYet(Exception):
    """An action cannot do its work now but can later (an SMS in the organization's quiet hours):
    the run waits, holding nothing, until `until`, and the step is tried again then."""

    def __init__(self, until: datetime, reason: str) -> None:
        super().__init__(reason)
        self.until, self.reason = until, reason


def describe_missing(path: str) -> str:
    """"deal.contact" → "the deal has no contact"; "deal.contact.email" → "the deal's contact
    has no email"."""
    parts = [p.replace("_", " ") for p in path.split(".")]
    if len(parts) == 1:
        return f"there is no {parts[0]}"
    owner = f"the {parts[0]}" + "".join(f"'s {p}" for p in parts[1:-1])
    return f"{owner} has no {parts[-1]}"


@dataclass
class ExecutionContext:
    run_id: int
    step: str  # see step_name
    organization_id: int
    trigger_type: str
    depth: int  # depth of the triggering event (the loop guard's counter)
    template_context: dict[str, Any]
    record: "Deal | Lead | None"  # the triggering deal or lead (None: an event with no record)
    notes: list[str] = field(default_factory=list)
    simulating: bool = False  # inside a simulation or a live debug: nothing is delivered
    # Template → its text as rendered here: the step's record of its settings reuses what the
    # step itself rendered (the same template against the same values) instead of rendering again.
    rendered: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return effect_key(self.run_id, self.step)

    def render(self, name: str, template: str, *, strict: bool = False) -> str:
        """Render a config value. With `strict`, a placeholder that is not a known value fails
        the step instead of rendering empty (for values written into records)."""
        try:
            rendered: Rendered = render(template, self.template_context)
        except TemplateTooLong as exc:
            raise ActionFailed(f"{name} {exc}; nothing was rendered") from None
        if strict and rendered.unresolved:
            paths = ", ".join(f"{{{{{p}}}}}" for p in rendered.unresolved)
            raise ActionFailed(f"{name}: {paths} is not a value this workflow knows; nothing was changed")
        for path in rendered.unresolved:
            self.notes.append(f"{name}: {{{{{path}}}}} is not a known value and rendered empty")
        if rendered.truncated:
            self.notes.append(f"{name}: output was cut to {len(rendered.text)} characters")
        self.rendered[template] = rendered.text
        return rendered.text

    def why_empty(self, template: str) -> str | None:
        """Why a template rendered empty, in words ("the deal has no contact"), if we can tell."""
        for path in template_paths(template):
            missing = missing_link(self.template_context, path)
            if missing:
                return describe_missing(missing)
        return None


class Action(Generic[Prepared]):
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

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        allowed = (*self.required, *self.optional)
        if not isinstance(config, dict):
            return [("config", f"must be an object with the settings of “{self.label}” "
                               f"({', '.join(allowed)}), e.g. {{\"{self.required[0]}\": …}}")]
        errors: list[tuple[str, str]] = []
        for name in sorted(set(config) - set(allowed)):
            errors.append((f"config.{name}", f"unknown setting; {self.type} takes {', '.join(sorted(allowed))}"))
        for name in self.required:
            if config.get(name) in (None, ""):
                errors.append((f"config.{name}", "is required"))
        for name in self.templated:
            value = config.get(name)
            if value is not None:
                errors += template_errors(f"config.{name}", value, trigger_type)
        return errors

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> Prepared:
        raise NotImplementedError

    def apply(self, items: list[tuple[ExecutionContext, Prepared]]) -> list[Result]:
        """Write the prepared items; return one result per item, in order."""
        raise NotImplementedError

    def existing(self, keys: list[str]) -> dict[str, Result]:
        """Results of effects already made under these keys."""
        raise NotImplementedError

    def deliver(self, items: list[tuple[ExecutionContext, Result]], deadline: float | None = None
                ) -> list[Outcome | None]:
        """External actions: hand the effects over, outside any transaction, until `deadline`;
        one outcome per item, None for those it left waiting (their run is handed back)."""
        raise NotImplementedError

    def settle_existing(self, result: Result) -> Outcome | None:
        """External actions: the outcome of an effect an earlier delivery made (a resumed run);
        None when it is made but not delivered yet."""
        raise NotImplementedError

    def awaiting(self, result: Result) -> datetime | None:
        """After its effect was delivered, the step waits until then for an answer (an SMS's
        reply), the run holding nothing; None: the step is done."""
        return None

    def answered(self, result: Result, *, over: bool) -> Result | None:
        """The step's result once the answer it waits for came, or once the wait is `over` without
        one (`timed_out`); None while it keeps waiting."""
        return {**result, "timed_out": True} if over else None

    def in_flight(self, organization_id: int, since: datetime) -> bool:
        """Whether a message of this kind of the organization is in a provider's hands right now
        (handed over at or after `since`): a worker is waiting on that provider (fairness.py).
        Database-only actions make no outside call."""
        return False

    def retry(self, key: str) -> bool:
        """Make a failed effect ready to be tried again; False when trying again could repeat it
        (an email whose outcome is unknown). Database-only effects fail whole: nothing to undo."""
        return True

    def cancel(self, key: str, reason: str) -> None:
        """The run stopped before this step finished: settle an effect made but not completed
        (an external action's queued message). Database-only effects are already complete."""


def template_errors(where: str, value: object, trigger_type: str) -> list[tuple[str, str]]:
    """A templated text must be text, not too long, and name only fields the trigger provides."""
    if not isinstance(value, str):
        return [(where, "must be text")]
    if len(value) > MAX_TEMPLATE:  # checked before scanning: a huge template is never parsed
        return [(where, f"is longer than {MAX_TEMPLATE} characters")]
    known = catalog.fields_for(trigger_type)
    return [(where, f"{{{{{path}}}}} is not a field this trigger provides{catalog.suggest(path, known)}")
            for path in template_paths(value) if path not in known]
