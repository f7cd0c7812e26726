"""The stored counters (``DeliveryCount``) no longer follow the passing ``sending`` status: a
row being sent stays counted under ``queued`` (its "bucket"), so a claim changes no counter
and a delivery costs two counter updates (its outcome) instead of four. The readers count
the few rows being sent live (``emailsettings.models.stored_counts``)."""

from importlib import import_module

from django.db import migrations

# The counter a status is kept under.
_BUCKET = "(CASE WHEN {row}.status = 'sending' THEN 'queued' ELSE {row}.status END)"
OLD_BUCKET, NEW_BUCKET = _BUCKET.format(row="OLD"), _BUCKET.format(row="NEW")

# As in 0015: of the two counter rows a change touches, the one with the smaller bucket is
# locked first, so two changes cannot wait for each other's rows in opposite orders.
POSTGRES_INSTALL = f"""
LOCK TABLE emailsettings_delivery IN SHARE ROW EXCLUSIVE MODE;
DROP TRIGGER IF EXISTS emailsettings_delivery_count_update ON emailsettings_delivery;
CREATE OR REPLACE FUNCTION emailsettings_delivery_count() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  old_bucket text;
  new_bucket text;
  first_is_old boolean;
BEGIN
  IF TG_OP <> 'INSERT' THEN old_bucket := {OLD_BUCKET}; END IF;
  IF TG_OP <> 'DELETE' THEN new_bucket := {NEW_BUCKET}; END IF;
  first_is_old := TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND old_bucket <= new_bucket);
  IF first_is_old THEN
    UPDATE emailsettings_deliverycount SET n = n - 1
     WHERE practitioner_id = OLD.practitioner_id AND channel = OLD.channel
       AND status = old_bucket;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    INSERT INTO emailsettings_deliverycount (practitioner_id, channel, status, n)
    VALUES (NEW.practitioner_id, NEW.channel, new_bucket, 1)
    ON CONFLICT (practitioner_id, channel, status)
    DO UPDATE SET n = emailsettings_deliverycount.n + 1;
  END IF;
  IF TG_OP = 'UPDATE' AND NOT first_is_old THEN
    UPDATE emailsettings_deliverycount SET n = n - 1
     WHERE practitioner_id = OLD.practitioner_id AND channel = OLD.channel
       AND status = old_bucket;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER emailsettings_delivery_count_update
AFTER UPDATE OF status, channel, practitioner_id ON emailsettings_delivery
FOR EACH ROW WHEN (
  {OLD_BUCKET} IS DISTINCT FROM {NEW_BUCKET}
  OR OLD.channel IS DISTINCT FROM NEW.channel
  OR OLD.practitioner_id IS DISTINCT FROM NEW.practitioner_id
) EXECUTE FUNCTION emailsettings_delivery_count();
"""

_SQLITE_ADD = f"""
  INSERT INTO emailsettings_deliverycount (practitioner_id, channel, status, n)
  VALUES (NEW.practitioner_id, NEW.channel, {NEW_BUCKET}, 1)
  ON CONFLICT (practitioner_id, channel, status) DO UPDATE SET n = n + 1;
"""
_SQLITE_SUBTRACT = f"""
  UPDATE emailsettings_deliverycount SET n = n - 1
   WHERE practitioner_id = OLD.practitioner_id AND channel = OLD.channel
     AND status = {OLD_BUCKET};
"""
SQLITE_INSTALL = [
    *(
        f"DROP TRIGGER IF EXISTS emailsettings_delivery_count_{name};"
        for name in ("insert", "delete", "update")
    ),
    "CREATE TRIGGER emailsettings_delivery_count_insert AFTER INSERT ON emailsettings_delivery"
    f" BEGIN {_SQLITE_ADD} END;",
    "CREATE TRIGGER emailsettings_delivery_count_delete AFTER DELETE ON emailsettings_delivery"
    f" BEGIN {_SQLITE_SUBTRACT} END;",
    "CREATE TRIGGER emailsettings_delivery_count_update"
    " AFTER UPDATE OF status, channel, practitioner_id ON emailsettings_delivery"
    f" WHEN {OLD_BUCKET} IS NOT {NEW_BUCKET} OR OLD.channel IS NOT NEW.channel"
    " OR OLD.practitioner_id IS NOT NEW.practitioner_id"
    f" BEGIN {_SQLITE_SUBTRACT} {_SQLITE_ADD} END;",
]

REFILL = f"""
INSERT INTO emailsettings_deliverycount (practitioner_id, channel, status, n)
SELECT practitioner_id, channel, {_BUCKET.format(row="emailsettings_delivery")}, COUNT(*)
FROM emailsettings_delivery GROUP BY 1, 2, 3
"""


def _install(schema_editor, postgres: str, sqlite: list[str], refill: str) -> None:
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(postgres)
        elif vendor == "sqlite":
            for statement in sqlite:
                cursor.execute(statement)
        else:
            return  # no triggers: the report counts rows (emailsettings.report)
        cursor.execute("DELETE FROM emailsettings_deliverycount")
        cursor.execute(refill)


def skip_sending(apps, schema_editor):
    _install(schema_editor, POSTGRES_INSTALL, SQLITE_INSTALL, REFILL)


def count_sending(apps, schema_editor):
    # Back to 0015's triggers, which count every status.
    before = import_module("emailsettings.migrations.0015_perf_delivery_counts")
    update = "DROP TRIGGER IF EXISTS emailsettings_delivery_count_update ON emailsettings_delivery;"
    rows = "DROP TRIGGER IF EXISTS emailsettings_delivery_count_rows ON emailsettings_delivery;"
    _install(
        schema_editor,
        f"{update}\n{rows}\n{before.POSTGRES_INSTALL}",
        [*before.SQLITE_REMOVE, *before.SQLITE_INSTALL],
        before.BACKFILL,
    )


class Migration(migrations.Migration):
    dependencies = [("emailsettings", "0022_reputation_guard")]

    operations = [migrations.RunPython(skip_sending, count_sending)]
