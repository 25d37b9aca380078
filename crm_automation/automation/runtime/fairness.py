"""Sharing the workers between organizations when one of them has a slow provider or long runs.

A worker that hands a message over waits for the provider: an email to a server that stalls at
RCPT TO costs EMAIL_TIMEOUT, a webhook to a hanging endpoint its timeout. A run that loops over
thousands of items keeps its worker busy as long. One organization with such a provider or such
runs must not hold every worker while other organizations' changes wait to be claimed (chaos
scenarios 8 and 9). Two rules apply between a group's segments (engine._advance_group: a segment
is one transaction of at most engine.SEGMENT_ROWS step rows, about a second) and when it is
about to deliver:

1. Slices. A group works for GROUP_SLICE_SECONDS at a time. At the end of a slice it goes on
   only if nothing else waits: no later group in the same task, no other organization's event
   that no worker has claimed. Otherwise it hands its runs back (a continuation task, at the end
   of the queue; not counted as an attempt; the runs resume from their step rows) and the worker
   turns to the others: a drain claims the next batch, a continuation drains the waiting events
   before it ends (tasks.continue_runs).
2. One worker per organization at a slow provider. A group whose organization already has a
   message in a provider's hands on another worker steps aside when others wait: its runs are
   released for STEP_ASIDE_SECONDS (a short lease, not counted as an attempt) and the watchdog
   resumes them after that, as it does any lapsed lease. A second worker would only wait on
   the same provider while the other organizations' work queues behind both.

When nothing else waits neither rule holds anything back: one organization's burst on its own
still gets every worker, and a fast provider is almost never caught mid-message.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from crm_automation.automation.nodes import REGISTRY
from crm_automation.automation.runtime.dispatch import unclaimed_events
from crm_automation.automation.runtime.leases import lease_length


def others_waiting(organization_id: int) -> bool:
    """Another organization's change waits for a worker (one indexed look at pending events)."""
    return unclaimed_events().exclude(organization_id=organization_id).exists()


def delivering_elsewhere(organization_id: int, action_types: set[str]) -> bool:
    """A message of these kinds of the organization is in a provider's hands right now. Our own
    are still queued at this point, so the one in flight is another worker's; one handed over
    more than a lease ago belongs to a worker that died (the sweep settles those)."""
    since = timezone.now() - lease_length()
    return any(REGISTRY[action_type].in_flight(organization_id, since) for action_type in sorted(action_types))


def slice_seconds() -> float:
    return settings.AUTOMATION["GROUP_SLICE_SECONDS"]


def step_aside_for() -> timedelta:
    return timedelta(seconds=settings.AUTOMATION["STEP_ASIDE_SECONDS"])
