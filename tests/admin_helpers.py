import json

from crm_automation.automation.models import Workflow


def workflow_form_data(wf: Workflow, **overrides) -> dict:
    """What the workflow change form posts: the fields plus both inlines' management forms."""
    actions = list(wf.actions.all())
    versions = list(wf.versions.all())
    data = {
        "organization": wf.organization_id, "name": wf.name, "description": wf.description,
        "trigger_type": wf.trigger_type, "trigger_config": json.dumps(wf.trigger_config),
        "conditions": json.dumps(wf.conditions), "error_handling": wf.error_handling,
        "timeout_seconds": wf.timeout_seconds,
        "actions-TOTAL_FORMS": len(actions), "actions-INITIAL_FORMS": len(actions),
        "actions-MIN_NUM_FORMS": 0, "actions-MAX_NUM_FORMS": 1000,
        "versions-TOTAL_FORMS": len(versions), "versions-INITIAL_FORMS": len(versions),
        "versions-MIN_NUM_FORMS": 0, "versions-MAX_NUM_FORMS": 1000,
    }
    for i, a in enumerate(actions):
        data.update({f"actions-{i}-id": a.pk, f"actions-{i}-workflow": wf.pk, f"actions-{i}-position": a.position,
                     f"actions-{i}-action_type": a.action_type, f"actions-{i}-config": json.dumps(a.config)})
    for i, v in enumerate(versions):
        data.update({f"versions-{i}-id": v.pk, f"versions-{i}-workflow": wf.pk})
    data.update(overrides)
    return data
