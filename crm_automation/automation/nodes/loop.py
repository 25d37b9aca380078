"""The `loop` node: its body runs once per item (`for-each` over a list the run can read), a
number of times (`count`), or until the AI model says to stop (`ask-orchestrator`, asked after
each iteration: loop_orchestrator.py), at most `maxIterations`. Iterations run one after another; each has
its own token ("2", and "2.0" for a loop inside it), so its steps are rows of their own. The
items are recorded when the loop starts (a redelivery goes over the same ones); the loop's row
is completed when the last iteration is over, and the run goes on by its `loop-done` handle.
"""

from typing import TYPE_CHECKING, Any

from crm_automation.automation.definition import catalog, graph
from crm_automation.automation.definition.templating import lookup, missing_link, template_paths
from crm_automation.automation.models import StepStatus
from crm_automation.automation.nodes import loop_orchestrator as orchestrator
from crm_automation.automation.nodes.base import ActionFailed, describe_missing, template_errors
from crm_automation.automation.nodes.flow import FlowNode, Problems, Steps
from crm_automation.automation.nodes.wait import whole

if TYPE_CHECKING:
    from crm_automation.automation.runtime.engine.walk import Place, RunState, StepRow

DEFAULT_ITERATIONS = 100


def mode_of(config: dict[str, Any]) -> str:
    mode: str = config.get("loopMode", "for-each" if "items" in config else "count")
    return mode


def loop_items(config: dict[str, Any], context: dict[str, Any]) -> list[Any]:
    """The items a loop goes over, capped at maxIterations; ActionFailed if they are not a list."""
    cap = config.get("maxIterations", DEFAULT_ITERATIONS)
    if mode_of(config) == "count":
        return list(range(min(config.get("count", 0), cap)))
    if mode_of(config) == orchestrator.MODE:  # as many as the model wants, at most the cap
        return list(range(cap))
    items: list[Any] | str = config["items"]  # a list, or one value in braces that is one (validated)
    if isinstance(items, str):
        path = template_paths(items)[0]
        value = lookup(context, path)
        if value is None:
            missing = missing_link(context, path)
            raise ActionFailed(f"{describe_missing(missing) if missing else f'{path} is empty'}, so there is "
                               "nothing to loop over")
        if not isinstance(value, list | tuple):
            raise ActionFailed(f"{{{{{path}}}}} is not a list, so there is nothing to loop over")
        items = list(value)
    return items[:cap]


class Loop(FlowNode):
    type = "loop"
    label = "Loop"
    example = '{"loopMode": "count", "count": 3}'
    handles_when_skipped = {graph.DONE}  # its body is not entered

    def validate(self, config: dict[str, Any], *, trigger_type: str, organization_id: int) -> Problems:
        allowed = {"loopMode", "items", "count", "maxIterations", orchestrator.PROMPT}
        errors = [(f"config.{k}", f"unknown setting; a loop takes {', '.join(sorted(allowed))}")
                  for k in sorted(set(config) - allowed)]
        mode = mode_of(config)
        cap = config.get("maxIterations", DEFAULT_ITERATIONS)
        if not whole(cap) or not 1 <= cap <= graph.MAX_ITERATIONS:
            errors.append(("config.maxIterations", f"must be a whole number from 1 to {graph.MAX_ITERATIONS}"))
        if mode == "count":
            count = config.get("count")
            if not whole(count) or not 0 <= count <= graph.MAX_ITERATIONS:
                errors.append(("config.count", f"must be a whole number from 0 to {graph.MAX_ITERATIONS}"))
        elif mode == "for-each":
            items = config.get("items")
            if isinstance(items, str):
                paths = template_paths(items) if len(items) <= 200 else []
                if len(paths) != 1 or items.strip() != f"{{{{{paths[0]}}}}}":
                    errors.append(("config.items",
                                   "must be one value in braces, e.g. {{Find Deals.rows}}, or a list"))
                elif paths[0] not in catalog.fields_for(trigger_type):
                    errors.append(("config.items", f"{{{{{paths[0]}}}}} is not a value this node can read"))
            elif not isinstance(items, list):
                errors.append(("config.items", "is required: a list, or one value in braces that is a list"))
        elif mode == orchestrator.MODE:
            if "maxIterations" not in config:
                errors.append(("config.maxIterations", f"is required with ask-orchestrator: the most iterations the "
                                                       f"model may ask for (1 to {graph.MAX_ITERATIONS})"))
            prompt = config.get(orchestrator.PROMPT)
            if prompt in (None, ""):
                errors.append((f"config.{orchestrator.PROMPT}", "is required with ask-orchestrator: what the model "
                                                                "decides by, e.g. “Go on until a reply came”"))
            else:
                errors += template_errors(f"config.{orchestrator.PROMPT}", prompt, trigger_type)
        else:
            errors.append(("config.loopMode", "must be for-each, count or ask-orchestrator"))
        if orchestrator.PROMPT in config and mode != orchestrator.MODE:
            errors.append((f"config.{orchestrator.PROMPT}", "is read only with loopMode: ask-orchestrator"))
        return errors

    def run(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow | None") -> None:
        if previous is not None and previous.status == StepStatus.RUNNING:
            items = (previous.result or {}).get("items") or []  # begun before: the same items
        else:
            try:
                items = loop_items(state.node(place[0]).config, state.context_at(place))
            except ActionFailed as exc:
                steps.fail(state, place, str(exc))
                return
            steps.record(state, place, StepStatus.RUNNING, result={"items": items, "count": len(items)},
                         counts=False)
        state.loop_items[place] = items
        if not items:
            self.end(steps, state, place)
            return
        state.loop_started(place)
        self.start_iteration(state, place, 0)

    def read_back(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow") -> None:
        state.loop_items[place] = (previous.result or {}).get("items") or []
        steps.follow(state, place, {graph.DONE})

    @classmethod
    def go_on(cls, steps: Steps, state: "RunState", place: "Place", index: int) -> bool:
        """Iteration `index` is running: False while work inside it is under way; else start the
        next iteration, or end the loop after the last."""
        if state.busy_within(graph.child_token(place[1], index)):
            return False
        if state.delivering_at(place):  # the model is being asked whether to go on
            return False
        if index + 1 < len(state.loop_items.get(place) or []):
            if mode_of(state.node(place[0]).config) == orchestrator.MODE:
                decided = orchestrator.decision(state, place, index)
                if isinstance(decided, orchestrator.Asking):
                    return False
                if isinstance(decided, str):
                    state.loop_ended(place)
                    # (the loop's attempt, begun when it started: a retry starts it again)
                    steps.fail(state, place, decided, result=cls.decided(state, place, index + 1), new_attempt=False)
                    return True
                if not decided["continue"]:
                    cls.end(steps, state, place, ran=index + 1)
                    return True
            cls.start_iteration(state, place, state.loop_next(place))
        else:
            cls.end(steps, state, place)
        return True

    @staticmethod
    def decided(state: "RunState", place: "Place", ran: int) -> dict[str, Any]:
        """The loop's result in ask-orchestrator mode: the iterations run and each decision."""
        decisions = [{"after": i + 1, **state.loop_decisions[(place, i)]} for i in range(ran)
                     if (place, i) in state.loop_decisions]
        return {"items": (state.loop_items.get(place) or [])[:ran], "count": ran, "decisions": decisions}

    @staticmethod
    def start_iteration(state: "RunState", place: "Place", index: int) -> None:
        token = graph.child_token(place[1], index)
        for _, target in state.graph.targets(place[0], {graph.BODY}):
            state.reach((target, token))

    @classmethod
    def end(cls, steps: Steps, state: "RunState", place: "Place", ran: int | None = None) -> None:
        state.loop_ended(place)
        items = state.loop_items.get(place) or []
        result: dict[str, Any] = {"items": items, "count": len(items)}
        if mode_of(state.node(place[0]).config) == orchestrator.MODE:
            result = cls.decided(state, place, len(items) if ran is None else ran)
            if ran is None:
                result["stopped"] = "at maxIterations"
        steps.record(state, place, StepStatus.COMPLETED, result=result, new_attempt=False)
        steps.follow(state, place, {graph.DONE})
