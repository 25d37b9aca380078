"""A deleted deal, lead, contact or project is announced like any other change.

`pre_delete` runs inside the deletion's transaction (Django's collector opens it before sending
the signal) while the row and its links can still be read, so the event that carries the record
as it was commits with the deletion, or not at all. It fires for every way of deleting: the
admin's delete page and bulk action, the API, a workflow's "delete a record" step, the shell.
An organization deleted with everything in it announces nothing: nobody is left to tell.
"""

from django.db.models.signals import pre_delete

from crm_automation.crm import changes
from crm_automation.crm.models import Organization
from crm_automation.crm.selectors import RECORD_MODELS, record_kind
from crm_automation.crm.snapshots import snapshot


def record_deleted(sender, instance, origin=None, **kwargs) -> None:
    if isinstance(origin, Organization):
        return
    entity = record_kind(instance)
    entity_id = instance.pk if entity != "contact" else changes.stand_in("contact", instance.pk)
    change = changes.RecordChange(changes.DELETED[entity], instance.organization_id, changes.GONE, entity_id,
                                  {"entity": entity, "record": snapshot(entity, instance)})
    changes.records_changed.send(sender=sender, changes=[change])


def connect() -> None:
    for model in RECORD_MODELS.values():
        pre_delete.connect(record_deleted, sender=model, dispatch_uid=f"crm-deleted-{model.__name__}")
