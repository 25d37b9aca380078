"""What the pages say: triggers, steps and durations in words an ops manager reads, never a
Python repr or an internal slug where a name exists."""

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from crm_automation.automation.definition import catalog
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.nodes import control
from crm_automation.automation.triggers import bulk, relative_time, schedules
from crm_automation.automation.triggers import record_changes as field_changes
from crm_automation.automation.wording import counted, shorten
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
    if catalog.is_event(trigger_type):
        return f"The event {trigger_type.removeprefix(catalog.EVENT_PREFIX)} arrives"
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


def _record_name(record: object) -> str:
    if not isinstance(record, dict):
        return ""
    return str(record.get("title") or record.get("name") or " ".join(
        str(record[k]) for k in ("first_name", "last_name") if record.get(k)) or record.get("id") or "")


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
    kind, _, channel = str(result.get("url", "")).partition(":")
    if kind in ("slack", "teams") and not channel.startswith("//"):  # a chat post names its channel
        return format_html("posted to {} {}{}", "Slack" if kind == "slack" else "Teams", channel, answer)
    return format_html("{} {}{}", str(result.get("method", "POST")).upper(), result.get("url", ""), answer)


def _asked_model(action_type: str, result: dict) -> SafeString:
    """"AI chose “negative” (no reply for weeks) · 200 + 20 tokens, $0.0009"."""
    if "would_ask" in result:
        tools = ", ".join(str(t) for t in result.get("would_use_tools") or [])
        return format_html("would ask the AI model: “{}”{}", result["would_ask"].get("prompt") or "",
                           format_html(" (it may call {})", tools) if tools else "")
    output = result.get("output")
    if action_type == "router" and isinstance(output, dict):
        said = format_html("chose “{}”{}", output.get("route", ""),
                           format_html(" ({})", output["reason"]) if output.get("reason") else "")
    elif output is not None:
        said = format_html("wrote {}", shown(output))  # (shown() quotes a text)
    else:
        said = format_html("asking the AI model ({})", result.get("status", "queued"))
    tokens = result.get("tokens")
    cost = format_html(" · {} + {} tokens, ${}", tokens["input"], tokens["output"], result.get("cost_usd", "0")) \
        if tokens else ""
    calls = result.get("tool_calls")
    if calls:  # an agent with tools: each call in a word, a refused one marked
        listed = format_html_join(", ", "{}{}", ((str(c.get("name", "")), " (refused)" if "error" in c else "")
                                                 for c in calls if isinstance(c, dict)))
        cost = format_html(" · called {}{}", listed, cost)
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
    for kind in ("project", "contact", "deal"):
        if f"{kind}_id" in result:
            name = result.get("name") or result.get("first_name") or result.get("title") or ""
            return format_html("created {} <a href=\"{}\">“{}”</a>", kind, _admin_link(kind, result[f"{kind}_id"]),
                               name)
    if "sms_id" in result or "would_text" in result:
        sms = result.get("would_text") or result
        state = {"sent": " (sent)", "queued": " (queued)", "failed": " (not sent)", "unknown": " (outcome unknown)",
                 }.get(str(result.get("delivery", "")), "")
        verb = "would text" if "would_text" in result else "texted"
        reply = ""
        if result.get("timed_out"):
            reply = f"; no reply ({result.get('no_reply_because') or 'none came in time'})"
        elif result.get("reply") is not None:
            reply = f"; they replied “{str(result['reply'])[:120]}”"
        return format_html("{} {}: “{}”{}{}", verb, sms.get("to", ""), str(sms.get("body", ""))[:80], state, reply)
    if "note_id" in result:
        return format_html("added a note: “{}”", str(result.get("body", ""))[:80])
    if "archived" in result:
        already = " (it was already)" if result.get("already") else ""
        return format_html("archived the {}{}", result["archived"], already)
    if "deleted" in result:
        return format_html("deleted the {} “{}”", result["deleted"], _record_name(result.get("record")))
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
    if action_type == control.LOOP and "decisions" in result:  # ask-orchestrator: why it stopped
        last = (result["decisions"] or [{}])[-1]
        why = "at maxIterations" if result.get("stopped") else (
            f"the AI model stopped it: “{last.get('reason', '')}”" if last.get("continue") is False else "")
        return f"{result.get('count', 0)} iterations" + (f"; {why}" if why else "")
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


# --- What a step is set up to do (step cards, graph boxes) -------------------------------------
# static/web/builder.js says the same on the builder's cards as one edits (its `summary`).
RECIPIENT_WORDS = {"admins": "the admins", "members": "everyone in the organization", "owner": "the record's owner"}
FUNCTION_WORDS = {"crm/query_deals": "Find deals", "crm/query_leads": "Find leads",
                  "crm/query_contacts": "Find contacts", "date/add": "Add to a date", "date/today": "Today's date",
                  "number/calc": "Calculate"}


def field_in_words(path: str) -> str:
    """A variable by its human name, braces or not: {{deal.close_date}} → “Deal › Close date”."""
    return catalog.variable_name(str(path).strip().strip("{} "))


def _value_in_words(value, stage_names: dict[str, str], stage: bool = False) -> str:
    if isinstance(value, list):
        return ", ".join(_value_in_words(v, stage_names, stage) for v in value)
    if stage:
        return stage_names.get(value, str(value))
    if value in (None, ""):
        return "empty"
    return f"“{value}”" if isinstance(value, str) else shown(value)


def rules_in_words(conditions: dict | None, stage_names: dict[str, str]) -> str:
    """“Deal's amount is greater than 5000 and Deal's stage equals Won”."""
    conditions = conditions if isinstance(conditions, dict) else {}
    rules = [r for r in conditions.get("rules") or [] if isinstance(r, dict)]
    said = []
    for rule in rules:
        field, operator = str(rule.get("field", "")), str(rule.get("operator", ""))
        text = f"{field_in_words(field)} {catalog.OPERATORS.get(operator, operator)}"
        if operator not in catalog.VALUELESS_OPERATORS:
            text += " " + _value_in_words(rule.get("value"), stage_names, stage=field.split(".")[-1] == "stage")
        said.append(text)
    return (" or " if conditions.get("combinator") == "or" else " and ").join(said)


def _quoted(text, limit: int | None) -> str:
    """“text”, shortened to `limit` characters when given (a box keeps room for the other settings)."""
    text = str(text or "") or "…"
    return f"“{shorten(text, limit) if limit else text}”"


def _task_words(config: dict, quote: int | None) -> str:
    assignee = config.get("assignee")
    who = " for the record's owner" if assignee == "owner" else f" for {assignee}" if assignee else ""
    due = config.get("due_in_days")
    when = "" if due is None else ", due the same day" if due == 0 else f", due in {counted(due, 'days')}"
    priority = config.get("priority")
    rank = f", {priority} priority" if priority and priority != "normal" else ""
    return f"Create task {_quoted(config.get('title'), quote)}{who}{when}{rank}"


def _wait_words(config: dict) -> str:
    if "until" in config:
        field = field_in_words(config.get("until") or "")
        amount = config.get("offsetAmount") or 0
        if not amount:
            return f"Wait until {field}"
        side = "before" if amount < 0 else "after"
        return f"Wait until {counted(abs(amount), config.get('offsetUnit', 'days'))} {side} {field}"
    return f"Wait {counted(config.get('delayAmount', 0), config.get('delayUnit', 'hours'))}"


def _loop_words(config: dict) -> str:
    if config.get("loopMode", "for-each" if "items" in config else "count") == "count":
        count = config.get("count", 0)
        return "Repeat once" if count == 1 else f"Repeat {count} times"
    if config.get("loopMode") == "ask-orchestrator":
        return f"Repeat while the AI model says so (at most {config.get('maxIterations', '…')})"
    items = config.get("items")
    if isinstance(items, list):
        return f"For each of {len(items)} items"
    return f"For each of {field_in_words(items or '…')}"


def _http_words(config: dict, targets: dict[str, str]) -> str:
    method = str(config.get("method") or "POST").upper()
    url = config.get("url") if isinstance(config.get("url"), str) and "{{" not in config["url"] else ""
    target: Any = config.get("target")  # (a target's name, or anything a draft holds)
    url = url or targets.get(target, "")
    host = urlsplit(url).hostname if url else ""
    return f"{method} to {host}" if host else f"{method} to the webhook target “{config.get('target') or '…'}”"


# What a record step (automation/nodes/create_records.py) is set up to do.
RECORD_STEPS = {
    "create_project": lambda c, quote: f"Create the project {_quoted(c.get('name'), quote)}"
                                       + (f" ({c['status']})" if c.get("status") else ""),
    "create_contact": lambda c, quote: "Create the contact "
                                       + (" ".join(str(c[k]) for k in ("first_name", "last_name") if c.get(k)) or "…"),
    "create_deal": lambda c, quote: f"Create the deal {_quoted(c.get('title'), quote)}",
    "create_note": lambda c, quote: f"Note: {_quoted(c.get('body'), quote)}",
    "delete_record": lambda c, quote: f"Delete the {c.get('record') or 'run’s record'} (only if an admin allowed it)",
    "archive_record": lambda c, quote: f"Archive the {c.get('record') or 'run’s record'}",
    "post_slack": lambda c, quote: f"Post to Slack #{c.get('channel') or '…'}: {_quoted(c.get('text'), quote)}",
    "post_teams": lambda c, quote: f"Post to Teams {c.get('channel') or '…'}: {_quoted(c.get('text'), quote)}",
    "response": lambda c, quote: f"Reply {c.get('statusCode', 200)}: {_quoted(c.get('responseTemplate'), quote)}",
    "send_sms": lambda c, quote: f"Text {c.get('to') or '…'}: {_quoted(c.get('body'), quote)}" + (
        f", then wait up to {c.get('reply_timeout_hours', 48)} h for the reply" if c.get("wait_for_reply") else ""),
}


def step_settings_in_words(step_type: str, config: dict | None, stage_names: dict[str, str], *,
                           workflows: dict[str, str] | None = None, targets: dict[str, str] | None = None,
                           quote: int | None = None) -> str:
    """What a step is set up to do, in one sentence: “Create task “Call” for the record's owner,
    due in 2 days”, “Wait 2 days”, “POST to hooks.example.com”. `workflows` names workflows by
    key (sub-workflows), `targets` gives webhook targets' URLs by name (their host is shown);
    `quote` shortens what people typed (titles, subjects, prompts) to that many characters."""
    c = config if isinstance(config, dict) else {}
    if step_type == "create_task":
        return _task_words(c, quote)
    if step_type == "send_email":
        return f"Email {shorten(c.get('to') or '…', quote) if quote else c.get('to') or '…'}: " \
               f"{_quoted(c.get('subject'), quote)}"
    if step_type in RECORD_STEPS:
        return RECORD_STEPS[step_type](c, quote)
    if step_type == "update_field":
        field = str(c.get("field") or "…")
        value = _value_in_words(c.get("value"), stage_names, stage=field.split(".")[-1] == "stage")
        return f"Set {field.split('.')[-1].replace('_', ' ')} → {value.strip('“”')}"
    if step_type == control.WAIT:
        return _wait_words(c)
    if step_type == control.CONDITION:
        return f"Continue if {rules_in_words(c, stage_names) or '…'}"
    if step_type == control.LOOP:
        return _loop_words(c)
    if step_type == control.PARALLEL:
        return "Runs its branches side by side"
    if step_type == control.MERGE:
        return "Goes on with the first branch to arrive" if c.get("strategy") == "first" else \
            "Waits for every branch, then goes on"
    if step_type == "notify":
        return f"Notify {RECIPIENT_WORDS.get(c.get('recipients') or 'admins', c.get('recipients'))}: " \
               f"{_quoted(c.get('title'), quote)}"
    if step_type == "http_request":
        return _http_words(c, targets or {})
    if step_type == questions.USER_INPUT:
        who = "ops members" if c.get("role") == "ops" else "admins"
        within = f", answer within {counted(c['timeoutAmount'], c.get('timeoutUnit', 'hours'))}" \
            if c.get("timeoutAmount") else ""
        return f"Ask {who}: {_quoted(c.get('promptText'), quote)}{within}"
    if step_type == "sub_workflow":
        key = c.get("workflowId") or "…"
        wait = "" if c.get("awaitResponse", True) else " (without waiting for it)"
        return f"Run the workflow “{(workflows or {}).get(key, key)}”{wait}"
    if step_type == "function":
        ref = str(c.get("functionRef") or "")
        return FUNCTION_WORDS.get(ref, f"Function {ref}")
    if step_type == "agent":
        json_words = " for a JSON object" if c.get("outputFormat") == "json" else ""
        return f"Ask the model{json_words}: {_quoted(c.get('additionalPrompt'), quote)}"
    if step_type == "router":
        routes = [str(r.get("label") or "") for r in c.get("routes") or [] if isinstance(r, dict)]
        return f"Let the model choose: {' / '.join(routes) or '…'}"
    return str(step_type or "step").replace("_", " ").capitalize()


def trigger_settings_in_words(trigger_type: str, config: dict | None, conditions: dict | None,
                              stage_names: dict[str, str], time_zone: str = "") -> str:
    """The trigger in words with its conditions: “Deal moves to Won, only if Deal's amount is
    greater than 5000”."""
    words = trigger_in_words(trigger_type, config, stage_names, time_zone)
    rules = rules_in_words(conditions, stage_names)
    return f"{words}, only if {rules}" if rules else words
