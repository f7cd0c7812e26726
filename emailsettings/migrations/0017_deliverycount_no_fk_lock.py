# The counters' foreign key dropped in the database (see DeliveryCount.practitioner). Only
# PostgreSQL has it to drop in a way that locks: SQLite would rebuild the table under its
# triggers, and its foreign-key checks take no row locks, so there the state alone changes.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def drop_foreign_key(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(
            cursor, "emailsettings_deliverycount"
        )
    for name, info in constraints.items():
        if info.get("foreign_key"):
            schema_editor.execute(
                "ALTER TABLE emailsettings_deliverycount DROP CONSTRAINT %s"
                % schema_editor.quote_name(name)
            )


class Migration(migrations.Migration):

    dependencies = [
        ('emailsettings', '0016_deliverycount_statuses'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='deliverycount',
                    name='practitioner',
                    field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL),
                ),
            ],
            database_operations=[migrations.RunPython(drop_foreign_key, migrations.RunPython.noop)],
        ),
    ]
