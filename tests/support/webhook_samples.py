"""Real ESP tracking-webhook payloads, copied from django-anymail's own test suite.

Every payload below comes from anymail's ``tests/test_<esp>_webhooks.py`` at django-anymail
v15.1 (commit 8c40cc46f6a7); the comment above each sample names the test function. Nothing
is invented: where anymail's tests have no payload for a kind (Postmark soft bounce, SendGrid
spam report, SES transient bounce, ...), that ESP simply has no sample for it, see
:func:`available`.

:func:`build` replaces the sample's message id, recipient and metadata with the caller's,
putting ``delivery_id`` where that ESP echoes custom metadata and where anymail reads
``event.metadata`` from: Postmark ``Metadata``, Mailgun ``event-data.user-variables``,
SendGrid top-level custom args, Amazon SES an ``X-Metadata`` header in ``mail.headers``,
Brevo ``X-Mailin-custom``. It also adds HTTP basic auth (anymail's ``WEBHOOK_SECRET``) and,
for Mailgun, the HMAC signature. :func:`post` sends the result with a Django test client.

To add a sample: copy the payload from anymail's webhook test into a :class:`Sample` in
``SAMPLES`` with the recipient, event id and ``event_type`` that test asserts, then run
``tests/emailsettings/test_webhook_samples.py``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

KINDS = ("delivered", "soft_bounce", "hard_bounce", "complaint", "rejected", "failed")
ESPS = ("postmark", "mailgun", "sendgrid", "amazon_ses", "brevo")

_ANYMAIL_TESTS = "django-anymail v15.1 tests/"


@dataclass(frozen=True)
class Sample:
    """One payload from anymail's tests and what anymail's tracking webhook makes of it."""

    esp: str
    kind: str
    #: the anymail test the payload was copied from
    source: str
    #: anymail's normalised ``event.event_type`` for this payload
    event_type: str
    #: the address anymail reports as ``event.recipient``; :func:`build` replaces it
    recipient: str
    #: anymail's ``event.event_id`` for this payload (None: the payload has none)
    event_id: str | None
    #: the ESP's JSON (for SES, the SES event that travels as the SNS ``Message`` string)
    payload: Mapping[str, Any] = field(repr=False)
    #: SES only: the SNS envelope of the same anymail test, without ``Message``
    sns: Mapping[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook POST as the ESP would send it to anymail's tracking URL."""

    path: str
    body: bytes
    content_type: str
    #: extra HTTP headers by their wire name (``Authorization``, ``X-Amz-Sns-Message-Type``)
    headers: dict[str, str]


# --- Postmark -----------------------------------------------------------------------------

_POSTMARK = (
    # tests/test_postmark_webhooks.py PostmarkDeliveryTestCase.test_delivered_event
    Sample(
        esp="postmark",
        kind="delivered",
        source="test_postmark_webhooks.py::PostmarkDeliveryTestCase::test_delivered_event",
        event_type="delivered",
        recipient="recipient@example.com",
        event_id=None,
        payload={
            "RecordType": "Delivery",
            "ServerId": 23,
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Recipient": "recipient@example.com",
            "Tag": "welcome-email",
            "Metadata": {
                "cohort": "2014-08-A",
                "userid": "12345",  # Postmark metadata is always converted to string
            },
            "DeliveredAt": "2014-08-01T13:28:10.2735393-04:00",
            "Details": "Test delivery webhook details",
        },
    ),
    # tests/test_postmark_webhooks.py PostmarkDeliveryTestCase.test_bounce_event
    Sample(
        esp="postmark",
        kind="hard_bounce",
        source="test_postmark_webhooks.py::PostmarkDeliveryTestCase::test_bounce_event",
        event_type="bounced",
        recipient="bounce@example.com",
        event_id="901542550",
        payload={
            "RecordType": "Bounce",
            "ID": 901542550,
            "Type": "HardBounce",
            "TypeCode": 1,
            "ServerID": 23,
            "Name": "Hard bounce",
            "MessageID": "2706ee8a-737c-4285-b032-ccd317af53ed",
            "Description": "The server was unable to deliver your message"
            " (ex: unknown user, mailbox not found).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": "bounce@example.com",
            "From": "sender@example.com",
            "BouncedAt": "2016-04-27T16:28:50.3963933-04:00",
            "DumpAvailable": True,
            "Inactive": True,
            "CanActivate": True,
            "Subject": "Postmark event test",
            "Content": "...",
        },
    ),
    # tests/test_postmark_webhooks.py PostmarkDeliveryTestCase.test_spam_event
    Sample(
        esp="postmark",
        kind="complaint",
        source="test_postmark_webhooks.py::PostmarkDeliveryTestCase::test_spam_event",
        event_type="complained",
        recipient="spam@example.com",
        event_id="901542550",
        payload={
            "RecordType": "SpamComplaint",
            "ID": 901542550,
            "Type": "SpamComplaint",
            "TypeCode": 512,
            "Name": "Spam complaint",
            "Tag": "Test",
            "MessageID": "2706ee8a-737c-4285-b032-ccd317af53ed",
            "ServerID": 1234,
            "Description": "",
            "Details": "Test spam complaint details",
            "Email": "spam@example.com",
            "From": "sender@example.com",
            "BouncedAt": "2016-04-27T16:28:50.3963933-04:00",
            "DumpAvailable": True,
            "Inactive": True,
            "CanActivate": False,
            "Subject": "Postmark event test",
        },
    ),
)

# --- Mailgun (JSON webhooks, announced 2018-06-29) ------------------------------------------

_MAILGUN = (
    # tests/test_mailgun_webhooks.py MailgunTestCase.test_delivered_event
    Sample(
        esp="mailgun",
        kind="delivered",
        source="test_mailgun_webhooks.py::MailgunTestCase::test_delivered_event",
        event_type="delivered",
        recipient="recipient@example.com",
        event_id="651869375b9df3c98fc15c4889b102119add1235c38fc92824",
        payload={
            "signature": {
                "timestamp": "1534108637",
                "token": "651869375b9df3c98fc15c4889b102119add1235c38fc92824",
                "signature": "...",
            },
            "event-data": {
                "tags": [],
                "timestamp": 1534108637.153125,
                "storage": {
                    "url": "https://sw.api.mailgun.net/v3/domains/example.org/messages/eyJwI...",
                    "key": "eyJwI...",
                },
                "recipient-domain": "example.com",
                "id": "hTWCTD81RtiDN-...",
                "campaigns": [],
                "user-variables": {},
                "flags": {
                    "is-routed": False,
                    "is-authenticated": True,
                    "is-system-test": False,
                    "is-test-mode": False,
                },
                "log-level": "info",
                "envelope": {
                    "sending-ip": "333.123.123.200",
                    "sender": "test@example.org",
                    "transport": "smtp",
                    "targets": "recipient@example.com",
                },
                "message": {
                    "headers": {
                        "to": "recipient@example.com",
                        "message-id": "20180812211713.1.DF5966851B4BAA99@example.org",
                        "from": "test@example.org",
                        "subject": "Testing",
                    },
                    "attachments": [],
                    "size": 809,
                },
                "recipient": "recipient@example.com",
                "event": "delivered",
                "delivery-status": {
                    "tls": True,
                    "mx-host": "smtp-in.example.com",
                    "attempt-no": 1,
                    "description": "",
                    "session-seconds": 3.5700838565826416,
                    "utf8": True,
                    "code": 250,
                    "message": "OK",
                    "certificate-verified": True,
                },
            },
        },
    ),
    # tests/test_mailgun_webhooks.py MailgunTestCase.test_failed_temporary_event
    Sample(
        esp="mailgun",
        kind="soft_bounce",
        source="test_mailgun_webhooks.py::MailgunTestCase::test_failed_temporary_event",
        event_type="deferred",
        recipient="undeliverable@nomx.example.com",
        # anymail's mailgun_sign_payload() adds this token when signing
        event_id="1234567890abcdef1234567890abcdef",
        payload={
            "event-data": {
                "event": "failed",
                "severity": "temporary",
                "reason": "generic",
                "timestamp": 1534111899.659519,
                "log-level": "warn",
                "message": {
                    "headers": {
                        "to": "undeliverable@nomx.example.com",
                        "message-id": "20180812214638.1.4A7D468E9BC18C5D@example.org",
                        "from": "Test Sender ",
                        "subject": "Testing",
                    },
                },
                "recipient": "undeliverable@nomx.example.com",
                "delivery-status": {
                    "attempt-no": 3,
                    "description": "No MX for nomx.example.com",
                    "session-seconds": 0.0,
                    "retry-seconds": 1800,
                    "code": 498,
                    "message": "No MX for nomx.example.com",
                },
            },
        },
    ),
    # tests/test_mailgun_webhooks.py MailgunTestCase.test_failed_permanent_event
    Sample(
        esp="mailgun",
        kind="hard_bounce",
        source="test_mailgun_webhooks.py::MailgunTestCase::test_failed_permanent_event",
        event_type="bounced",
        recipient="invalid@example.com",
        event_id="1234567890abcdef1234567890abcdef",
        payload={
            "event-data": {
                "event": "failed",
                "severity": "permanent",
                "reason": "bounce",
                "recipient": "invalid@example.com",
                "timestamp": 1534110422.389832,
                "log-level": "error",
                "message": {
                    "headers": {
                        "to": "invalid@example.com",
                        "message-id": "20180812214658.1.0DF563D0B3597700@example.org",
                        "from": "Test Sender ",
                    },
                },
                "delivery-status": {
                    "tls": True,
                    "mx-host": "aspmx.l.example.org",
                    "attempt-no": 1,
                    "description": "",
                    "session-seconds": 2.952177047729492,
                    "utf8": True,
                    "code": 550,
                    "message": "5.1.1 The email account that you tried to reach"
                    " does not exist. Please try\n"
                    "5.1.1 double-checking the recipient's email address for typos",
                    "certificate-verified": True,
                },
            },
        },
    ),
    # tests/test_mailgun_webhooks.py MailgunTestCase.test_complained_event
    Sample(
        esp="mailgun",
        kind="complaint",
        source="test_mailgun_webhooks.py::MailgunTestCase::test_complained_event",
        event_type="complained",
        recipient="recipient@example.com",
        event_id="1234567890abcdef1234567890abcdef",
        payload={
            "event-data": {
                "event": "complained",
                "id": "ncV2XwymRUKbPek_MIM-Gw",
                "timestamp": 1377214260.049634,
                "log-level": "warn",
                "recipient": "recipient@example.com",
                "message": {
                    "headers": {
                        "to": "foo@recipient.com",
                        "message-id": "20130718032413.263EE2E0926@example.org",
                        "from": "Sender Name <sender@example.org>",
                        "subject": "We are not spammer",
                    },
                },
            },
        },
    ),
    # tests/test_mailgun_webhooks.py MailgunTestCase.test_rejected_event
    # (anymail notes Mailgun did not deliver "rejected" through webhooks as of 8/2018; the
    # payload has no "recipient": anymail takes it from the "to" header.)
    Sample(
        esp="mailgun",
        kind="rejected",
        source="test_mailgun_webhooks.py::MailgunTestCase::test_rejected_event",
        event_type="rejected",
        recipient="recipient@example.org",
        event_id="1234567890abcdef1234567890abcdef",
        payload={
            "event-data": {
                "event": "rejected",
                "timestamp": 1529704976.104692,
                "log-level": "warn",
                "reject": {
                    "reason": "Sandbox subdomains are for test purposes only.",
                    "description": "",
                },
                "message": {
                    "headers": {
                        "to": "Recipient Name <recipient@example.org>",
                        "message-id": "20180622220256.1.B31A451A2E5422BB@sandbox55887.mailgun.org",
                        "from": "test@sandbox55887.mailgun.org",
                        "subject": "Test Subject",
                    },
                },
            },
        },
    ),
)

# --- SendGrid (anymail has dropped official support; the view warns on every request) ---------

_SENDGRID = (
    # tests/test_sendgrid_webhooks.py SendGridDeliveryTestCase.test_delivered_event
    Sample(
        esp="sendgrid",
        kind="delivered",
        source="test_sendgrid_webhooks.py::SendGridDeliveryTestCase::test_delivered_event",
        event_type="delivered",
        recipient="recipient@example.com",
        event_id="nOSv8m0eTQ-vxvwNwt3fZQ",
        payload={
            "ip": "167.89.17.173",
            "response": "250 2.0.0 OK 1461095248 m143si2210036ioe.159 - gsmtp ",
            "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
            "sg_event_id": "nOSv8m0eTQ-vxvwNwt3fZQ",
            "sg_message_id": "wrfRRvF7Q0GgwUo2CvDmEA.filter0425p1mdw1.13037.57168B4A1D.0",
            "tls": 1,
            "event": "delivered",
            "email": "recipient@example.com",
            "timestamp": 1461095250,
            "anymail_id": "4ab185c2-0171-492f-9ce0-27de258efc99",
        },
    ),
    # tests/test_sendgrid_webhooks.py SendGridDeliveryTestCase.test_deferred_event
    Sample(
        esp="sendgrid",
        kind="soft_bounce",
        source="test_sendgrid_webhooks.py::SendGridDeliveryTestCase::test_deferred_event",
        event_type="deferred",
        recipient="recipient@example.com",
        event_id="b_syL5UiTvWC_Ky5L6Bs5Q",
        payload={
            "response": "Email was deferred due to the following reason(s):"
            " [IPs were throttled by recipient server]",
            "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
            "sg_event_id": "b_syL5UiTvWC_Ky5L6Bs5Q",
            "sg_message_id": "u9Gvi3mzT6iC2poAb58_qQ.filter0465p1mdw1.8054.5718271B40.0",
            "event": "deferred",
            "email": "recipient@example.com",
            "attempt": "1",
            "timestamp": 1461200990,
            "anymail_id": "ccf83222-0d7e-4542-8beb-893122afa757",
        },
    ),
    # tests/test_sendgrid_webhooks.py SendGridDeliveryTestCase.test_bounce_event
    Sample(
        esp="sendgrid",
        kind="hard_bounce",
        source="test_sendgrid_webhooks.py::SendGridDeliveryTestCase::test_bounce_event",
        event_type="bounced",
        recipient="noreply@example.com",
        event_id="lC0Rc-FuQmKbnxCWxX1jRQ",
        payload={
            "ip": "167.89.17.173",
            "status": "5.1.1",
            "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
            "sg_event_id": "lC0Rc-FuQmKbnxCWxX1jRQ",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            "sg_message_id": "Lli-03HcQ5-JLybO9fXsJg.filter0077p1las1.21536.5717FC482.0",
            "tls": 1,
            "event": "bounce",
            "email": "noreply@example.com",
            "timestamp": 1461095250,
            "anymail_id": "de212213-bb66-4302-8f3f-20acdb7a104e",
            "type": "bounce",
        },
    ),
    # tests/test_sendgrid_webhooks.py SendGridDeliveryTestCase.test_dropped_invalid_event
    Sample(
        esp="sendgrid",
        kind="rejected",
        source="test_sendgrid_webhooks.py::SendGridDeliveryTestCase::test_dropped_invalid_event",
        event_type="rejected",
        recipient="invalid@invalid",
        event_id="3NPOePGOTkeM_U3fgWApfg",
        payload={
            "email": "invalid@invalid",
            "anymail_id": "c74002d9-7ccb-4f67-8b8c-766cec03c9a6",
            "timestamp": 1461095250,
            "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
            "sg_event_id": "3NPOePGOTkeM_U3fgWApfg",
            "sg_message_id": "filter0093p1las1.9128.5717FB8127.0",
            "reason": "Invalid",
            "event": "dropped",
        },
    ),
)

# --- Amazon SES (SES event inside an SNS Notification) -------------------------------------

# The short SNS envelope anymail's SES tests use after test_bounce_event.
_SNS_SHORT = {
    "Type": "Notification",
    "MessageId": "19ba9823-d7f2-53c1-860e-cb10e0d13dfc",
    "Timestamp": "2018-03-26T17:58:59.675Z",
}

_AMAZON_SES = (
    # tests/test_amazon_ses_webhooks.py AmazonSESNotificationsTests.test_delivery_event
    Sample(
        esp="amazon_ses",
        kind="delivered",
        source="test_amazon_ses_webhooks.py::AmazonSESNotificationsTests::test_delivery_event",
        event_type="delivered",
        recipient="jane@example.com",
        event_id="19ba9823-d7f2-53c1-860e-cb10e0d13dfc",
        sns=_SNS_SHORT,
        payload={
            "notificationType": "Delivery",
            "mail": {
                "timestamp": "2016-01-27T14:59:38.237Z",
                "messageId": "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
                "destination": [
                    "jane@example.com",
                    "mary@example.com",
                    "richard@example.com",
                ],
            },
            "delivery": {
                "timestamp": "2016-01-27T14:59:38.237Z",
                "recipients": ["jane@example.com"],
                "processingTimeMillis": 546,
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
                "smtpResponse": "250 ok:  Message 64111812 accepted",
                "remoteMtaIp": "127.0.2.0",
            },
        },
    ),
    # tests/test_amazon_ses_webhooks.py AmazonSESNotificationsTests.test_bounce_event
    # (the complete example event from Amazon's documentation)
    Sample(
        esp="amazon_ses",
        kind="hard_bounce",
        source="test_amazon_ses_webhooks.py::AmazonSESNotificationsTests::test_bounce_event",
        event_type="bounced",
        recipient="jane@example.com",
        event_id="19ba9823-d7f2-53c1-860e-cb10e0d13dfc",
        sns={
            "Type": "Notification",
            "MessageId": "19ba9823-d7f2-53c1-860e-cb10e0d13dfc",
            "TopicArn": "arn:aws:sns:us-east-1:1234567890:SES_Events",
            "Subject": "Amazon SES Email Event Notification",
            "Timestamp": "2018-03-26T17:58:59.675Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE-SIGNATURE==",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com"
            "/SimpleNotificationService-12345abcde.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com"
            "/?Action=Unsubscribe&SubscriptionArn=arn...",
        },
        payload={
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "reportingMTA": "dns; email.example.com",
                "bouncedRecipients": [
                    {
                        "emailAddress": "jane@example.com",
                        "status": "5.1.1",
                        "action": "failed",
                        "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User unknown",
                    }
                ],
                "bounceSubType": "General",
                "timestamp": "2016-01-27T14:59:44.101Z",
                "feedbackId": "00000138111222aa-44455566-cccc-cccc-cccc-ddddaaaa068a-000000",
                "remoteMtaIp": "127.0.2.0",
            },
            "mail": {
                "timestamp": "2016-01-27T14:59:38.237Z",
                "source": "john@example.com",
                "sourceArn": "arn:aws:ses:us-west-2:888888888888:identity/example.com",
                "sourceIp": "127.0.3.0",
                "sendingAccountId": "123456789012",
                "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
                "destination": [
                    "jane@example.com",
                    "mary@example.com",
                    "richard@example.com",
                ],
                "headersTruncated": False,
                "headers": [
                    {"name": "From", "value": '"John Doe" <john@example.com>'},
                    {
                        "name": "To",
                        "value": '"Jane Doe" <jane@example.com>,'
                        ' "Mary Doe" <mary@example.com>,'
                        ' "Richard Doe" <richard@example.com>',
                    },
                    {"name": "Message-ID", "value": "custom-message-ID"},
                    {"name": "Subject", "value": "Hello"},
                    {"name": "Content-Type", "value": 'text/plain; charset="UTF-8"'},
                    {"name": "Content-Transfer-Encoding", "value": "base64"},
                    {"name": "Date", "value": "Wed, 27 Jan 2016 14:05:45 +0000"},
                    {"name": "X-Tag", "value": "tag 1"},
                    {"name": "X-Tag", "value": "tag 2"},
                    {"name": "X-Metadata", "value": '{"meta1":"string","meta2":2}'},
                ],
                "commonHeaders": {
                    "from": ["John Doe <john@example.com>"],
                    "date": "Wed, 27 Jan 2016 14:05:45 +0000",
                    "to": [
                        "Jane Doe <jane@example.com>, Mary Doe <mary@example.com>,"
                        " Richard Doe <richard@example.com>"
                    ],
                    "messageId": "custom-message-ID",
                    "subject": "Hello",
                },
            },
        },
    ),
    # tests/test_amazon_ses_webhooks.py AmazonSESNotificationsTests.test_complaint_event
    Sample(
        esp="amazon_ses",
        kind="complaint",
        source="test_amazon_ses_webhooks.py::AmazonSESNotificationsTests::test_complaint_event",
        event_type="complained",
        recipient="richard@example.com",
        event_id="19ba9823-d7f2-53c1-860e-cb10e0d13dfc",
        sns=_SNS_SHORT,
        payload={
            "notificationType": "Complaint",
            "complaint": {
                "userAgent": "AnyCompany Feedback Loop (V0.01)",
                "complainedRecipients": [{"emailAddress": "richard@example.com"}],
                "complaintFeedbackType": "abuse",
            },
            "mail": {
                "messageId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
                "destination": [
                    "jane@example.com",
                    "mary@example.com",
                    "richard@example.com",
                ],
            },
        },
    ),
    # tests/test_amazon_ses_webhooks.py AmazonSESNotificationsTests.test_reject_event
    Sample(
        esp="amazon_ses",
        kind="rejected",
        source="test_amazon_ses_webhooks.py::AmazonSESNotificationsTests::test_reject_event",
        event_type="rejected",
        recipient="recipient@example.com",
        event_id="19ba9823-d7f2-53c1-860e-cb10e0d13dfc",
        sns=_SNS_SHORT,
        payload={
            "eventType": "Reject",
            "mail": {
                "timestamp": "2016-10-14T17:38:15.211Z",
                "messageId": "7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
                "destination": ["recipient@example.com"],
            },
            "reject": {"reason": "Bad content"},
        },
    ),
    # tests/test_amazon_ses_webhooks.py AmazonSESNotificationsTests.test_rendering_failure_event
    Sample(
        esp="amazon_ses",
        kind="failed",
        source="test_amazon_ses_webhooks.py::AmazonSESNotificationsTests"
        "::test_rendering_failure_event",
        event_type="failed",
        recipient="recipient@example.com",
        event_id="19ba9823-d7f2-53c1-860e-cb10e0d13dfc",
        sns=_SNS_SHORT,
        payload={
            "eventType": "Rendering Failure",
            "mail": {
                "messageId": "c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
                "destination": ["recipient@example.com"],
            },
            "failure": {
                "errorMessage": "Attribute 'attributeName' is not present in the rendering data.",
                "templateName": "MyTemplate",
            },
        },
    ),
)

# --- Brevo ---------------------------------------------------------------------------------

_BREVO = (
    # tests/test_brevo_webhooks.py BrevoDeliveryTestCase.test_delivered_event
    Sample(
        esp="brevo",
        kind="delivered",
        source="test_brevo_webhooks.py::BrevoDeliveryTestCase::test_delivered_event",
        event_type="delivered",
        recipient="recipient@example.com",
        event_id=None,
        payload={
            "event": "delivered",
            "email": "recipient@example.com",
            "ts_epoch": 1520363423000,
            "message-id": "<201803011158.9876543210@smtp-relay.mailin.fr>",
        },
    ),
    # tests/test_brevo_webhooks.py BrevoDeliveryTestCase.test_soft_bounce_event
    Sample(
        esp="brevo",
        kind="soft_bounce",
        source="test_brevo_webhooks.py::BrevoDeliveryTestCase::test_soft_bounce_event",
        event_type="bounced",
        recipient="recipient@no-mx.example.com",
        event_id=None,
        payload={
            "event": "soft_bounce",
            "email": "recipient@no-mx.example.com",
            "ts_epoch": 1520363423000,
            "message-id": "<201803011158.9876543210@smtp-relay.mailin.fr>",
            "reason": "undefined Unable to find MX of domain no-mx.example.com",
        },
    ),
    # tests/test_brevo_webhooks.py BrevoDeliveryTestCase.test_hard_bounce
    Sample(
        esp="brevo",
        kind="hard_bounce",
        source="test_brevo_webhooks.py::BrevoDeliveryTestCase::test_hard_bounce",
        event_type="bounced",
        recipient="not-a-user@example.com",
        event_id=None,
        payload={
            "event": "hard_bounce",
            "email": "not-a-user@example.com",
            "ts_epoch": 1520363423000,
            "message-id": "<201803011158.9876543210@smtp-relay.mailin.fr>",
            # the leading space in the reason is as received in actual testing:
            "reason": " RecipientError: 550 5.5.0 Requested action not taken: mailbox unavailable.",
            "tag": "header-tag",
        },
    ),
    # tests/test_brevo_webhooks.py BrevoDeliveryTestCase.test_complaint
    # (Brevo's newer "complaint" event; test_spam has the older "spam" one, which anymail
    # says it never observed and guessed.)
    Sample(
        esp="brevo",
        kind="complaint",
        source="test_brevo_webhooks.py::BrevoDeliveryTestCase::test_complaint",
        event_type="complained",
        recipient="example@domain.com",
        event_id=None,
        payload={
            "event": "complaint",
            "email": "example@domain.com",
            "id": "xxxxx",
            "date": "2020-10-09 00:00:00",
            "ts": 1604933619,
            "message-id": "201798300811.5787683@relay.domain.com",
            "ts_event": 1604933654,
            "X-Mailin-custom": '{"meta": "data"}',
            "tags": ["transac_messages"],
        },
    ),
    # tests/test_brevo_webhooks.py BrevoDeliveryTestCase.test_blocked
    Sample(
        esp="brevo",
        kind="rejected",
        source="test_brevo_webhooks.py::BrevoDeliveryTestCase::test_blocked",
        event_type="rejected",
        recipient="recipient@example.com",
        event_id=None,
        payload={
            "event": "blocked",
            "email": "recipient@example.com",
            "ts_epoch": 1520363423000,
            "message-id": "<201803011158.9876543210@smtp-relay.mailin.fr>",
            "reason": "blocked : due to blacklist user",
        },
    ),
    # tests/test_brevo_webhooks.py BrevoDeliveryTestCase.test_error_email
    # ("ts_epoch" here is in seconds, although Brevo sends milliseconds elsewhere: anymail
    # reads it as milliseconds, so event.timestamp falls in January 1970.)
    Sample(
        esp="brevo",
        kind="failed",
        source="test_brevo_webhooks.py::BrevoDeliveryTestCase::test_error_email",
        event_type="failed",
        recipient="example@domain.com",
        event_id=None,
        payload={
            "event": "error",
            "email": "example@domain.com",
            "id": "xxxxx",
            "date": "2020-10-09 00:00:00",
            "ts": 1604933619,
            "message-id": "201798300811.5787683@relay.domain.com",
            "ts_event": 1604933654,
            "subject": "My first Transactional",
            "X-Mailin-custom": '{"meta": "data"}',
            "template_id": 22,
            "tags": ["transac_messages"],
            "ts_epoch": 1604933623,
        },
    ),
)

SAMPLES: dict[tuple[str, str], Sample] = {
    (sample.esp, sample.kind): sample
    for sample in (*_POSTMARK, *_MAILGUN, *_SENDGRID, *_AMAZON_SES, *_BREVO)
}

#: (esp, kind) -> the ``event.event_type`` anymail's tracking webhook reports for the sample
EXPECTED: dict[tuple[str, str], str] = {key: sample.event_type for key, sample in SAMPLES.items()}

_CONTENT_TYPES = {
    "postmark": "application/json",
    "mailgun": "application/json",
    "sendgrid": "application/json",
    # SNS posts its JSON as text/plain
    "amazon_ses": "text/plain; charset=UTF-8",
    "brevo": "application/json",
}


def available(esp: str) -> tuple[str, ...]:
    """The kinds (in ``KINDS`` order) anymail's tests have a payload for, for ``esp``."""
    if esp not in ESPS:
        raise ValueError(f"unknown ESP {esp!r}; one of {ESPS}")
    return tuple(kind for kind in KINDS if (esp, kind) in SAMPLES)


def build(
    esp: str,
    kind: str,
    *,
    message_id: str,
    recipient: str,
    delivery_id: str | None,
    timestamp: datetime | None = None,
    event_id: str | None = None,
    basic_auth: str | None = None,
    mailgun_signing_key: str | None = None,
) -> WebhookRequest:
    """The anymail test payload for ``(esp, kind)`` as a webhook POST to anymail's URL.

    ``message_id`` goes where anymail reads ``event.message_id``: Postmark ``MessageID``,
    SendGrid ``anymail_id``, SES ``mail.messageId``, Brevo ``message-id``; Mailgun
    ``message.headers.message-id`` without angle brackets, which anymail adds back, so pass
    the bracketed id Mailgun's send API returns. ``recipient`` replaces the sample's address
    everywhere in the payload. ``delivery_id`` becomes ``{"delivery_id": ...}`` metadata
    (None: no metadata at all). ``timestamp`` (aware) replaces the field anymail reads as
    ``event.timestamp``; None keeps the sample's. ``event_id`` replaces the field anymail
    reads as ``event.event_id`` (ValueError where the payload has none: Brevo, Postmark
    deliveries). ``basic_auth`` ("user:password", anymail's ``WEBHOOK_SECRET``) adds an
    Authorization header. ``mailgun_signing_key`` signs a Mailgun payload the way Mailgun
    does (HMAC-SHA256 of timestamp + token); without it a Mailgun payload is unsigned.
    """
    try:
        sample = SAMPLES[esp, kind]
    except KeyError as err:
        raise ValueError(
            f"no anymail sample for {esp} {kind}; available: {available(esp)}"
        ) from err
    if event_id is not None and sample.event_id is None:
        raise ValueError(f"the {esp} {kind} payload carries no event id")
    if mailgun_signing_key is not None and esp != "mailgun":
        raise ValueError("mailgun_signing_key applies to Mailgun only")

    payload = _replace_text(sample.payload, sample.recipient, recipient)
    metadata = {"delivery_id": delivery_id} if delivery_id is not None else None
    headers: dict[str, str] = {}

    if esp == "postmark":
        payload["MessageID"] = message_id
        payload.pop("Metadata", None)
        if metadata:
            payload["Metadata"] = metadata
        if timestamp is not None:
            field_name = "DeliveredAt" if "DeliveredAt" in payload else "BouncedAt"
            payload[field_name] = timestamp.isoformat()
        if event_id is not None:
            payload["ID"] = int(event_id)  # Postmark sends a number; anymail str()s it
        body: Any = payload
    elif esp == "mailgun":
        event_data = payload["event-data"]
        event_data["message"]["headers"]["message-id"] = message_id.strip("<>")
        event_data.pop("user-variables", None)
        if metadata:
            event_data["user-variables"] = metadata
        signature = payload.setdefault("signature", {})
        if timestamp is not None:
            event_data["timestamp"] = timestamp.timestamp()
            signature["timestamp"] = str(int(timestamp.timestamp()))
        if event_id is not None:
            signature["token"] = event_id
        if mailgun_signing_key is not None:
            _mailgun_sign(payload, mailgun_signing_key)
        elif not signature:
            del payload["signature"]
        body = payload
    elif esp == "sendgrid":
        payload["anymail_id"] = message_id
        if metadata:
            payload.update(metadata)  # SendGrid merges custom_args into each event
        if timestamp is not None:
            payload["timestamp"] = int(timestamp.timestamp())
        if event_id is not None:
            payload["sg_event_id"] = event_id
        body = [payload]  # SendGrid posts a batch of events
    elif esp == "amazon_ses":
        mail = payload["mail"]
        mail["messageId"] = message_id
        mail_headers = [h for h in mail.get("headers", []) if h["name"].lower() != "x-metadata"]
        if metadata:
            # anymail's SES backend sends metadata as this header; SES echoes it only when
            # the notification includes the original headers.
            mail_headers.append({"name": "X-Metadata", "value": json.dumps(metadata)})
        if mail_headers:
            mail["headers"] = mail_headers
        else:
            mail.pop("headers", None)
        sns = dict(copy.deepcopy(sample.sns or {}))
        sns["Message"] = json.dumps(payload) + "\n"
        if timestamp is not None:
            sns["Timestamp"] = (
                timestamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            )
        if event_id is not None:
            sns["MessageId"] = event_id
        headers["X-Amz-Sns-Message-Id"] = sns["MessageId"]
        headers["X-Amz-Sns-Message-Type"] = sns["Type"]
        body = sns
    elif esp == "brevo":
        payload["message-id"] = message_id
        payload.pop("X-Mailin-custom", None)
        if metadata:
            payload["X-Mailin-custom"] = json.dumps(metadata)
        if timestamp is not None:
            payload["ts_epoch"] = int(timestamp.timestamp() * 1000)
        body = payload
    else:  # pragma: no cover - SAMPLES only holds ESPS
        raise AssertionError(esp)

    if basic_auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(basic_auth.encode()).decode()
    return WebhookRequest(
        path=f"/anymail/{esp}/tracking/",
        body=json.dumps(body).encode(),
        content_type=_CONTENT_TYPES[esp],
        headers=headers,
    )


def post(client: Any, request: WebhookRequest) -> Any:
    """POST ``request`` with a Django test client; returns the response."""
    extra = {
        "HTTP_" + name.upper().replace("-", "_"): value for name, value in request.headers.items()
    }
    return client.generic(
        "POST", request.path, data=request.body, content_type=request.content_type, **extra
    )


# The raw value that tells a soft from a hard bounce, per ESP (see raw_bounce_kind).
_BOUNCE_KINDS: dict[str, dict[str, Literal["soft", "hard"]]] = {
    "postmark": {"HardBounce": "hard", "SoftBounce": "soft"},  # Type
    "mailgun": {"permanent": "hard", "temporary": "soft"},  # event-data.severity
    "sendgrid": {"bounce": "hard", "deferred": "soft"},  # event
    "amazon_ses": {"Permanent": "hard", "Transient": "soft"},  # bounce.bounceType
    "brevo": {"hard_bounce": "hard", "soft_bounce": "soft"},  # event
}


def raw_bounce_kind(esp: str, esp_event: Mapping[str, Any]) -> Literal["soft", "hard"] | None:
    """Soft or hard bounce, from the raw field that tells them apart (test support only).

    ``esp_event`` is anymail's ``event.esp_event``. None when the payload is not a bounce or
    the ESP does not say. Postmark ``Type`` (HardBounce / SoftBounce; Transient and DnsError
    are already "deferred"), Mailgun ``event-data.severity`` of a "failed" event (permanent
    / temporary; temporary is already "deferred"), SendGrid ``event`` (bounce / deferred),
    SES ``bounce.bounceType`` (Permanent / Transient; Undetermined -> None), Brevo ``event``
    (hard_bounce / soft_bounce).
    """
    if esp == "postmark":
        raw = esp_event.get("Type")
    elif esp == "mailgun":
        event_data = esp_event.get("event-data", {})
        raw = event_data.get("severity") if event_data.get("event") == "failed" else None
    elif esp in ("sendgrid", "brevo"):
        raw = esp_event.get("event")
    elif esp == "amazon_ses":
        is_bounce = esp_event.get("notificationType", esp_event.get("eventType")) == "Bounce"
        raw = esp_event.get("bounce", {}).get("bounceType") if is_bounce else None
    else:
        raise ValueError(f"unknown ESP {esp!r}")
    return _BOUNCE_KINDS[esp].get(raw) if isinstance(raw, str) else None


def _replace_text(value: Any, old: str, new: str) -> Any:
    """A deep copy of a JSON value with ``old`` replaced by ``new`` inside every string."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, Mapping):
        return {key: _replace_text(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_text(item, old, new) for item in value]
    return value


def _mailgun_sign(payload: dict[str, Any], signing_key: str) -> None:
    # As anymail's tests/test_mailgun_webhooks.py mailgun_sign_payload(): Mailgun signs
    # timestamp + token with HMAC-SHA256 under the webhook signing key.
    signature = payload.setdefault("signature", {})
    token = signature.setdefault("token", "1234567890abcdef1234567890abcdef")
    timestamp = signature.setdefault(
        "timestamp", str(int(float(payload["event-data"].get("timestamp", "1234567890.123"))))
    )
    signature["signature"] = hmac.new(
        key=signing_key.encode("ascii"),
        msg=f"{timestamp}{token}".encode("ascii"),
        digestmod=hashlib.sha256,
    ).hexdigest()
