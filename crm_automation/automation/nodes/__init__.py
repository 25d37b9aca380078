"""Workflow actions. Each one validates its config when saved and executes idempotently:
its side effect is keyed by (run, step), so a redelivered run never repeats it."""

from typing import Any

from crm_automation.automation.nodes.ai import Agent, Router
from crm_automation.automation.nodes.base import Action, ActionFailed, ExecutionContext, effect_key, step_name
from crm_automation.automation.nodes.create_records import (
    ArchiveRecord,
    CreateContact,
    CreateDeal,
    CreateNote,
    CreateProject,
    DeleteRecord,
)
from crm_automation.automation.nodes.create_task import CreateTask
from crm_automation.automation.nodes.notify import Notify
from crm_automation.automation.nodes.post_chat import PostSlack, PostTeams
from crm_automation.automation.nodes.response import Response
from crm_automation.automation.nodes.send_email import SendEmail
from crm_automation.automation.nodes.send_sms import SendSms
from crm_automation.automation.nodes.sub_workflow import SubWorkflow
from crm_automation.automation.nodes.update_field import UpdateField
from crm_automation.webhooks.action import HttpRequest

REGISTRY: dict[str, Action[Any]] = {a.type: a for a in (
    SendEmail(), UpdateField(), CreateTask(), Notify(), SubWorkflow(), HttpRequest(), Agent(), Router(),
    CreateProject(), CreateContact(), CreateDeal(), CreateNote(), ArchiveRecord(), DeleteRecord(), SendSms(),
    PostSlack(), PostTeams(), Response())}

__all__ = ["REGISTRY", "Action", "ActionFailed", "ExecutionContext", "effect_key", "step_name"]
