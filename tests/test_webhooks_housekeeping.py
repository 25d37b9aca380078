"""Webhook housekeeping: signing secrets are encrypted at rest (and keys can be rotated), old
receipts are pruned, and an answer in a charset Python does not know is still read."""

from datetime import timedelta
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from crm_automation.webhooks import client as http_client
from crm_automation.webhooks.fields import TOKEN_PREFIX
from crm_automation.webhooks.maintenance import PRUNE_TASK, prune_receipts
from crm_automation.webhooks.models import WebhookEndpoint, WebhookReceipt, WebhookTarget
from crm_automation.webhooks.services import webhook_endpoint_create, webhook_endpoint_rotate
from tests.test_webhooks_outbound import receiver  # noqa: F401 (fixture)


def stored(model, pk) -> tuple[str, str]:
    """The columns as the database holds them, past the field's decryption."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secret, previous_secret FROM {model._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()


def test_a_secret_is_stored_encrypted_and_read_back_plain(org, owner):
    endpoint, secret = webhook_endpoint_create(organization=org, name="Shop", by=None)
    raw, _ = stored(WebhookEndpoint, endpoint.pk)
    assert raw.startswith(TOKEN_PREFIX) and secret not in raw and "whsec_" not in raw
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret
    _, new = webhook_endpoint_rotate(endpoint_id=endpoint.pk, by=owner, grace_hours=24)
    raw, raw_previous = stored(WebhookEndpoint, endpoint.pk)
    assert secret not in raw_previous and new not in raw
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).valid_secrets() == [new, secret]


def test_a_secret_written_in_plain_text_before_encryption_is_read_and_encrypted_on_save(org):
    endpoint, secret = webhook_endpoint_create(organization=org, name="Shop", by=None)
    with connection.cursor() as cursor:  # as rows written before secrets were encrypted
        cursor.execute(f"UPDATE {WebhookEndpoint._meta.db_table} SET secret = %s WHERE id = %s", [secret, endpoint.pk])
    loaded = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert loaded.secret == secret
    loaded.save(update_fields=["secret"])
    assert stored(WebhookEndpoint, endpoint.pk)[0].startswith(TOKEN_PREFIX)


def test_keys_rotate_old_values_stay_readable_and_reencrypt_moves_them_to_the_new_key(org, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    endpoint, secret = webhook_endpoint_create(organization=org, name="Shop", by=None)
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret
    out = StringIO()
    call_command("reencrypt_secrets", stdout=out)
    assert "secrets of 1 webhook" in out.getvalue()
    settings.FIELD_ENCRYPTION_KEYS = [new]
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted"):
        WebhookEndpoint.objects.get(pk=endpoint.pk)


def test_a_malformed_key_is_a_configuration_error_that_says_how_to_make_one(org, settings):
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-key"]
    with pytest.raises(ImproperlyConfigured, match="Fernet.generate_key"):
        webhook_endpoint_create(organization=org, name="Shop", by=None)
    assert not WebhookEndpoint.objects.exists() and not WebhookTarget.objects.exists()


def test_old_receipts_are_pruned_daily_and_recent_ones_kept(org, settings):
    endpoint, _ = webhook_endpoint_create(organization=org, name="Shop", by=None)
    receipts = [WebhookReceipt.objects.create(organization=org, endpoint=endpoint, message_id=f"m{i}", size=2)
                for i in range(3)]
    now = timezone.now()
    WebhookReceipt.objects.filter(pk=receipts[0].pk).update(received_at=now - timedelta(days=31))
    WebhookReceipt.objects.filter(pk=receipts[1].pk).update(received_at=now - timedelta(days=29))
    settings.WEBHOOK_RECEIPT_DAYS = 30
    assert prune_receipts() == 1
    assert set(WebhookReceipt.objects.values_list("message_id", flat=True)) == {"m1", "m2"}
    assert prune_receipts(days=0) == 2
    schedule = Schedule.objects.get(name="webhooks-prune-receipts")  # made by post_migrate
    assert (schedule.func, schedule.schedule_type) == (PRUNE_TASK, Schedule.DAILY)


def test_an_answer_in_an_unknown_charset_is_read_as_utf8(receiver):  # noqa: F811
    receiver.reply(200, "ok", headers={"content-type": "text/plain; charset=x-no-such-charset"})
    answer = http_client.call(method="POST", url=f"http://127.0.0.1:{receiver.port}/", headers={}, body=b"{}",
                              timeout=5)
    assert (answer.status, answer.text, answer.error) == (200, "ok", "")
