from django.db import migrations, models
from django.utils.text import slugify


def backfill(apps, schema_editor):
    """Every workflow gets a YAML id (from its name, unique in its organization) and every action
    a node id (from its type, unique in its workflow, in order: the same ids documents.py gives
    the id-less actions of older versions, so versions compare node by node)."""
    Workflow = apps.get_model("automation", "Workflow")
    WorkflowAction = apps.get_model("automation", "WorkflowAction")
    taken: dict[int, set] = {}
    for wf in Workflow.objects.order_by("pk"):
        used = taken.setdefault(wf.organization_id, set())
        base = slugify(wf.name)[:70].strip("-") or "workflow"
        key, n = base, 2
        while key in used:
            key, n = f"{base}-{n}", n + 1
        used.add(key)
        Workflow.objects.filter(pk=wf.pk).update(key=key)
        ids: set = set()
        for action in WorkflowAction.objects.filter(workflow=wf).order_by("position", "pk"):
            node, m = action.action_type.replace("_", "-"), 2
            candidate = node
            while candidate in ids or candidate == "trigger":
                candidate, m = f"{node}-{m}", m + 1
            ids.add(candidate)
            WorkflowAction.objects.filter(pk=action.pk).update(node_id=candidate)


class Migration(migrations.Migration):

    dependencies = [
        ('automation', '0002_reenrollment_enrollment'),
    ]

    operations = [
        migrations.AddField(
            model_name='workflow',
            name='key',
            field=models.SlugField(default='', help_text="The workflow's id in YAML (kebab-case), unique in the organization.", max_length=80),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='workflowaction',
            name='node_id',
            field=models.SlugField(blank=True, editable=False, help_text="The step's node id in YAML: stable across versions.", max_length=60),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='workflow',
            constraint=models.UniqueConstraint(fields=('organization', 'key'), name='uniq_workflow_key'),
        ),
    ]
