"""What the pages say: triggers, steps and durations in words an ops manager reads, never a
Python repr or an internal slug where a name exists."""

from datetime import UTC, datetime

from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from crm_automation.automation import bulk, catalog, control, field_changes, questions, relative_time, schedules
from crm_automation.crm.changes import DEAL_CREATED, DEAL_STAGE_CHANGE, LEAD_CONVERTED, LEAD_CREATED
from crm_automation.crm.selectors import shown


def trigger_in_words(trigger_type: str, config: dict | None, stage_names: dict[str, str], time_zone: str = "") -> str:
    """“Deal moves from Proposal to Won”, “Lead is converted”, “Webhook arrives at Shop”."""
    config = config or {}

    def stage(slug: str) -> str:
        return stage_names.get(slug, slug)

    if trigger_type == DEAL_STAGE_CHANGE:
        source, target = config.get("from_stage"), config.get("to_stage")
        if source and target:
            return f"Deal moves from {stage(source)} to {stage(target)}"
        if target:
            return f"Deal moves to {stage(target)}"
        if source:
            return f"Deal leaves {stage(source)}"
        return "Deal changes stage"
    if trigger_type == DEAL_CREATED:
        return f"Deal is created in {stage(config['to_stage'])}" if config.get("to_stage") else "Deal is created"
    words = {LEAD_CONVERTED: "Lead is converted", LEAD_CREATED: "Lead is created",
             catalog.MANUAL_DEAL: "Started by hand on a deal", catalog.MANUAL_LEAD: "Started by hand on a lead"}
    if trigger_type in words:
        return words[trigger_type]
    if trigger_type == catalog.WEBHOOK:
        return f"Webhook arrives at {config['endpoint']}" if config.get("endpoint") else "Webhook arrives"
    if trigger_type in catalog.UPDATED:
        return field_changes.describe(trigger_type, config if ("fields" in config or "crossing" in config) else {})
    if trigger_type in (catalog.DATE_REACHED, catalog.IN_STAGE):
        set_up = config.get("field" if trigger_type == catalog.DATE_REACHED else "stage")
        return relative_time.describe(trigger_type, config, stage_names) if set_up else \
            dict(catalog.TRIGGER_CHOICES)[trigger_type]
    if trigger_type == catalog.SCHEDULE:
        return schedules.describe(config, time_zone) if ("frequency" in config or "cron" in config) else "On a schedule"
    return dict(catalog.TRIGGER_CHOICES).get(trigger_type, "Unknown trigger")


def bulk_source(source: str) -> str:
    """“Import”, “Bulk change”, “API call”: where a held bulk operation came from."""
    words = bulk.WORDS.get(source)
    return _first_up(words.split(" ", 1)[1] if words else source)


def bulk_operation(source: str, size: int) -> str:
    """“An import of 5,000 records”."""
    return f"{_first_up(bulk.WORDS.get(source, source))} of {size:,} record{'' if size == 1 else 's'}"


def _first_up(text: str) -> str:
    return text[:1].upper() + text[1:]


def duration(ms: int | None) -> str:
    """340 ms, 1.2 s, 2 min 3 s, 3 h 5 min, 2 days 4 h."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} days {hours % 24} h"


def moment(value: str | datetime | None) -> str:
    """An ISO time from a step's result, in the current (organization's) zone, with seconds."""
    when = parse_datetime(value) if isinstance(value, str) else value
    if when is None:
        return str(value or "")
    if timezone.is_naive(when):
        when = timezone.make_aware(when, UTC)
    return timezone.localtime(when).strftime("%-d %b %Y, %H:%M:%S %Z")


def _admin_link(model: str, pk) -> str:
    return reverse(f"admin:crm_{model}_change", args=[pk])


def _emailed(result: dict) -> SafeString:
    delivery = {"sent": "sent", "queued": "queued", "sending": "being sent", "failed": "not sent",
                "unknown": "outcome unknown"}.get(result.get("delivery", ""), "")
    state = format_html(" ({})", delivery) if delivery else ""
    if "would_send" in result:
        mail = result["would_send"]
        return format_html("would email {}: “{}”", mail.get("to", ""), mail.get("subject", ""))
    return format_html("emailed {}: “{}”{}", result.get("to", ""), result.get("subject", ""), state)


def _task(result: dict) -> SafeString:
    if "would_create_task" in result:
        return format_html("would create task “{}”", result["would_create_task"].get("title", ""))
    who = format_html(" for {}", result["assignee"]) if result.get("assignee") else ""
    return format_html("created task <a href=\"{}\">“{}”</a>{}", _admin_link("task", result["task_id"]),
                       result.get("title", ""), who)


def _field(result: dict, simulated: bool) -> SafeString:
    field = str(result.get("field", "")).split(".", 1)[-1].replace("_", " ")
    verb = "would change" if simulated else "changed"
    return format_html("{} {}: {} → {}", verb, field, shown(result.get("old")) or "empty",
                       shown(result.get("new")) or "empty")


def _question(result: dict) -> SafeString:
    asked = format_html("asked {}: “{}”", "admins" if result.get("role") == "admin" else "ops members",
                        result.get("prompt", ""))
    decision = result.get("decision")
    if not decision:
        due = format_html(", answer by {}", moment(result["timeout_at"])) if result.get("timeout_at") else ""
        return format_html("{} (waiting for an answer{})", asked, due)
    if decision == questions.TIMED_OUT:
        return format_html("{}, no answer in time", asked)
    by = format_html(" by {}", result["answered_by"]) if result.get("answered_by") else ""
    comment = format_html(": “{}”", result["comment"]) if result.get("comment") else ""
    return format_html("{}, {}{}{}", asked, decision, by, comment)


def _webhook(result: dict) -> SafeString:
    answer = format_html(" → {}", result["status"]) if result.get("status") else format_html(
        " ({})", result.get("delivery", "queued"))
    return format_html("{} {}{}", str(result.get("method", "POST")).upper(), result.get("url", ""), answer)


def _asked_model(action_type: str, result: dict) -> SafeString:
    """"AI chose “negative” (no reply for weeks) · 200 + 20 tokens, $0.0009"."""
    if "would_ask" in result:
        return format_html("would ask the AI model: “{}”", result["would_ask"].get("prompt") or "")
    output = result.get("output")
    if action_type == "router" and isinstance(output, dict):
        said = format_html("chose “{}”{}", output.get("route", ""),
                           format_html(" ({})", output["reason"]) if output.get("reason") else "")
    elif output is not None:
        said = format_html("wrote “{}”", shown(output)[:300])
    else:
        said = format_html("asking the AI model ({})", result.get("status", "queued"))
    tokens = result.get("tokens")
    cost = format_html(" · {} + {} tokens, ${}", tokens["input"], tokens["output"], result.get("cost_usd", "0")) \
        if tokens else ""
    return format_html("{}{}", said, cost)


def step_in_words(action_type: str, result: dict | None, *, simulated: bool = False) -> SafeString | str:
    """One step's outcome as a sentence, with a link to what it made when there is one."""
    result = result or {}
    if not result:
        return ""
    if "email_id" in result or "would_send" in result:
        return _emailed(result)
    if "task_id" in result or "would_create_task" in result:
        return _task(result)
    if "field" in result and "new" in result:
        return _field(result, simulated)
    if action_type == questions.USER_INPUT:
        return _question(result)
    if "delivery_id" in result or ("url" in result and "method" in result):
        return _webhook(result)
    if action_type in catalog.AI_NODES:
        return _asked_model(action_type, result)
    if "notified" in result:
        return format_html("notified {}: “{}”", ", ".join(result["notified"]) or "nobody", result.get("title", ""))
    if "child_run" in result or "would_start" in result:
        return format_html("started workflow {}", result.get("workflow") or result.get("would_start", ""))
    if action_type == control.CONDITION:
        return format_html("{} ({})", "yes" if result.get("passed") else "no", result.get("explanation", ""))
    if action_type == control.WAIT:
        for key, words in (("waited_until", "waited until {}"), ("wake_at", "waiting until {}"),
                           ("would_wait_until", "would wait until {}")):
            if key in result:
                return format_html(words, moment(result[key]))
    if action_type == control.LOOP:
        return f"{result.get('count', 0)} items"
    if action_type == control.PARALLEL:
        return f"split into {len(result.get('branches', []))} branches"
    if action_type == control.MERGE:
        return f"joined {len(result.get('arrived_from', []))} branches"
    if "value" in result:
        return format_html("result: {}", shown(result["value"]))
    if "rows" in result:
        return f"{len(result['rows'])} rows"
    # Anything else: its keys and values as text, never a repr.
    return format_html_join(", ", "{}: {}", ((key.replace("_", " "), shown(value)) for key, value in result.items()
                                              if not isinstance(value, dict | list)))
