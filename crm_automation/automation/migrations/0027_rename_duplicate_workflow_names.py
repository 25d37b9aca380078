"""Workflows of one organization whose names differ only in case (or not at all) are renamed
“Name (2)”, “Name (3)” … before names become unique (0028). The one that keeps its name is the
one people use: a live workflow before a draft, a draft before an archived one, then the oldest."""

from django.db import migrations
from django.db.models.functions import Lower

MAX_NAME = 200
KEEPS_NAME_FIRST = {"activated": 0, "paused": 0, "draft": 1, "archived": 2}


def _suffixed(name: str, n: int) -> str:
    suffix = f" ({n})"
    base = name if len(name) + len(suffix) <= MAX_NAME else name[:MAX_NAME - len(suffix) - 1].rstrip() + "…"
    return base + suffix


def rename_duplicates(apps, schema_editor) -> None:
    Workflow = apps.get_model("automation", "Workflow")
    rows = list(Workflow.objects.annotate(folded=Lower("name"))
                .values_list("pk", "organization_id", "name", "folded", "status"))
    groups: dict[tuple[int, str], list[tuple]] = {}
    for row in rows:
        groups.setdefault((row[1], row[3]), []).append(row)
    # Names taken per organization, folded as Python does (a suffixed name must be free too).
    taken: dict[int, set[str]] = {}
    for _pk, org, name, _folded, _status in rows:
        taken.setdefault(org, set()).add(name.casefold())
    for (org, _folded), group in groups.items():
        if len(group) < 2:
            continue
        group.sort(key=lambda r: (KEEPS_NAME_FIRST.get(r[4], 3), r[0]))
        for pk, _org, name, _f, _s in group[1:]:
            n = 2
            while _suffixed(name, n).casefold() in taken[org]:
                n += 1
            new = _suffixed(name, n)
            taken[org].add(new.casefold())
            Workflow.objects.filter(pk=pk).update(name=new)


class Migration(migrations.Migration):

    dependencies = [
        ("automation", "0026_workflow_edited_by"),
    ]

    operations = [
        migrations.RunPython(rename_duplicates, migrations.RunPython.noop),
    ]
