"""Stage slugs become unique per organization regardless of case (`won`, `Won`, `WON` were three
stages). Where an organization already has such duplicates, one keeps its slug and the others get
a free one with a number (`won-2`, `won-3` …); their names, deals and ids do not change.

The one that keeps its slug is the one workflows most likely name: an all-lower-case slug first,
then the oldest. A workflow that named a renamed slug no longer matches it, so every rename is
printed (and the stage keeps its name, which people see)."""

from django.db import migrations, models
from django.db.models.functions import Lower

MAX_SLUG = 50


def _free(base: str, taken: set[str]) -> str:
    n = 2
    while True:
        suffix = f"-{n}"
        slug = base[:MAX_SLUG - len(suffix)] + suffix
        if slug.lower() not in taken:
            return slug
        n += 1


def rename_duplicates(apps, schema_editor) -> None:
    Stage = apps.get_model("crm", "Stage")
    rows = list(Stage.objects.order_by("organization_id", "pk").values_list("pk", "organization_id", "slug"))
    taken: dict[int, set[str]] = {}
    groups: dict[tuple[int, str], list[tuple[int, str]]] = {}
    for pk, org, slug in rows:
        taken.setdefault(org, set()).add(slug.lower())
        groups.setdefault((org, slug.lower()), []).append((pk, slug))
    for (org, folded), group in groups.items():
        if len(group) < 2:
            continue
        keeper = next(((pk, slug) for pk, slug in group if slug == folded), group[0])
        for pk, slug in group:
            if pk == keeper[0]:
                continue
            new = _free(folded, taken[org])
            taken[org].add(new)
            Stage.objects.filter(pk=pk).update(slug=new)
            print(f"\n  Stage {pk} of organization {org}: slug “{slug}” renamed “{new}” (“{keeper[1]}” kept "
                  "its slug); workflows that named it must name the new slug.")


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0006_deal_stage_entered_at"),
    ]

    operations = [
        migrations.RunPython(rename_duplicates, migrations.RunPython.noop, elidable=True),
        migrations.RemoveConstraint(model_name="stage", name="uniq_stage_slug"),
        migrations.AddConstraint(
            model_name="stage",
            constraint=models.UniqueConstraint(
                models.F("organization"), Lower("slug"), name="uniq_stage_slug_ci",
                violation_error_message="Stage slugs are unique in an organization regardless of case."),
        ),
    ]
