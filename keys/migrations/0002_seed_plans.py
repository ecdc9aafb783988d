from django.db import migrations

# This migration's own copy of the seed plans, (name, requests per DAY, description): it must do what it did
# when it was written, whatever later code says the seed plans are.
SEED_PLANS = [
    ("10RequestPerDay", 10, "Try things out: ten requests a day."),
    ("20RequestPerDay", 20, "For a small script: twenty requests a day."),
    ("30RequestPerDay", 30, "For daily work: thirty requests a day."),
]


def create_seed_plans(apps, schema_editor):
    Plan = apps.get_model("keys", "Plan")
    for name, quota, description in SEED_PLANS:
        Plan.objects.get_or_create(name=name, defaults={"quota": quota, "period": "DAY", "description": description})


class Migration(migrations.Migration):
    dependencies = [("keys", "0001_initial")]

    operations = [migrations.RunPython(create_seed_plans, migrations.RunPython.noop)]
