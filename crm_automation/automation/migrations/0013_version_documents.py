from django.db import migrations


def store_documents(apps, schema_editor):
    """Versions made before documents were stored get theirs: today's linear workflows as a
    chain of seed-001 nodes (their definitions are unchanged and keep running as they did)."""
    from crm_automation.automation.definition.documents import document_of  # the exporter, as it is now

    WorkflowVersion = apps.get_model("automation", "WorkflowVersion")
    for version in WorkflowVersion.objects.filter(document__isnull=True).select_related("workflow").iterator():
        document = document_of(key=version.workflow.key, name=version.workflow.name,
                               description=version.workflow.description, definition=version.definition)
        WorkflowVersion.objects.filter(pk=version.pk).update(document=document)


class Migration(migrations.Migration):

    dependencies = [
        ("automation", "0012_manual_triggers"),
    ]

    operations = [
        migrations.RunPython(store_documents, migrations.RunPython.noop),
    ]
