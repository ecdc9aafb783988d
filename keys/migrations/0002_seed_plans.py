from django.db import migrations

from keys.seed import SEED_PLANS


def create_seed_plans(apps, schema_editor):
    Plan = apps.get_model("keys", "Plan")
    for name, quota, description in SEED_PLANS:
        Plan.objects.get_or_create(name=name, defaults={"quota": quota, "period": "DAY", "description": description})


class Migration(migrations.Migration):
    dependencies = [("keys", "0001_initial")]

    operations = [migrations.RunPython(create_seed_plans, migrations.RunPython.noop)]
