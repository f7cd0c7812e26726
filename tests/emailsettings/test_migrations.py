"""Data migrations run in a bounded number of statements, however many legacy rows a
production database holds (each statement holds the delivery table's lock)."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from emailsettings.models import Delivery
from tests.factories import DeliveryFactory, InvoiceFactory

pytestmark = pytest.mark.django_db

outbox_spine = importlib.import_module("emailsettings.migrations.0005_outbox_spine")


@pytest.mark.parametrize("legacy_rows", [10, 60])
def test_0005_maps_every_legacy_error_class_in_the_same_few_statements(legacy_rows):
    # The database as 0005 finds it: without today's check on the classes (PostgreSQL's DDL
    # is transactional: the test's rollback restores it).
    [valid] = [c for c in Delivery._meta.constraints if c.name == "delivery_error_class_valid"]
    with connection.schema_editor() as editor:
        editor.remove_constraint(Delivery, valid)
    invoice = InvoiceFactory()
    rows = DeliveryFactory.create_batch(legacy_rows + 2, invoice=invoice, status="failed")
    for n, row in enumerate(rows[:legacy_rows]):
        Delivery.objects.filter(pk=row.pk).update(last_error_class=f"vecchio_{n}")
    Delivery.objects.filter(pk=rows[-2].pk).update(last_error_class="recipient_refused")
    Delivery.objects.filter(pk=rows[-1].pk).update(last_error_class="expired")

    with CaptureQueriesContext(connection) as queries:
        outbox_spine.map_error_classes(apps, None)

    assert len(queries) <= 3  # the same for 10 legacy rows and for 60
    classes = dict(Delivery.objects.values_list("pk", "last_error_class"))
    assert {classes[row.pk] for row in rows[:legacy_rows]} == {"unknown"}
    assert classes[rows[-2].pk] == "recipient_refused"
    assert classes[rows[-1].pk] == "expired"
