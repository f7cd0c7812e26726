"""PEC receipts built to the PEC technical rules (DM 2 novembre 2005, "Regole tecniche del
servizio di trasmissione di documenti informatici mediante posta elettronica certificata").

A receipt is an email from the provider (``posta-certificata@…``) to the sender, signed by the
provider (S/MIME ``multipart/signed``, with a key issued by the local test CA, or a
throw-away one), with the headers
``X-Ricevuta`` (its type) and ``X-Riferimento-Message-ID`` (the message it is about), a
human-readable text and the certified data in ``daticert.xml``; the delivery receipt
("completa") also carries the original message as ``postacert.eml``.

Used by the tests and by the local test server of ``make run`` (``devtools/imapserver.py``),
which answers a message to a PEC address with these receipts; development only.
"""

from __future__ import annotations

import datetime
import email
import email.policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

PROVIDER = "Gestore PEC di prova"
PROVIDER_DOMAIN = "gestore.pec-prova.test"
PROVIDER_ADDRESS = f"posta-certificata@{PROVIDER_DOMAIN}"

SUBJECTS = {
    "accettazione": "ACCETTAZIONE",
    "non-accettazione": "AVVISO DI NON ACCETTAZIONE",
    "presa-in-carico": "PRESA IN CARICO",
    "avvenuta-consegna": "CONSEGNA",
    "preavviso-errore-consegna": "AVVISO DI MANCATA CONSEGNA PER SUPERAMENTO TEMPI MASSIMI",
    "errore-consegna": "AVVISO DI MANCATA CONSEGNA",
}


def _signer() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"posta-certificata@{PROVIDER_DOMAIN}")]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert, key


def daticert(
    kind: str,
    *,
    sender: str,
    recipient: str,
    subject: str,
    referenced_id: str,
    at: datetime.datetime,
    error: str = "nessuno",
    extended_error: str = "",
) -> bytes:
    zone = at.strftime("%z")
    extended = (
        f"\n    <errore-esteso>{escape(extended_error)}</errore-esteso>" if extended_error else ""
    )
    delivered_to = (
        f"\n    <consegna>{escape(recipient)}</consegna>"
        if kind in ("avvenuta-consegna", "errore-consegna", "preavviso-errore-consegna")
        else ""
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE postacert SYSTEM "postacert.dtd">
<postacert tipo="{kind}" errore="{error}">
  <intestazione>
    <mittente>{escape(sender)}</mittente>
    <destinatari tipo="certificato">{escape(recipient)}</destinatari>
    <risposte>{escape(sender)}</risposte>
    <oggetto>{escape(subject)}</oggetto>
  </intestazione>
  <dati>
    <gestore-emittente>{PROVIDER}</gestore-emittente>
    <data zona="{zone}">
      <giorno>{at:%d/%m/%Y}</giorno>
      <ora>{at:%H:%M:%S}</ora>
    </data>
    <identificativo>opec.{at:%Y%m%d%H%M%S}.1.01.1.1@{PROVIDER_DOMAIN}</identificativo>
    <msgid>{escape(referenced_id)}</msgid>
    <ricevuta tipo="completa"/>{delivered_to}{extended}
  </dati>
</postacert>
""".encode()


def receipt(
    kind: str,
    *,
    sender: str,
    recipient: str,
    subject: str,
    referenced_id: str,
    at: datetime.datetime,
    original: bytes | None = None,
    error: str = "nessuno",
    extended_error: str = "",
    signer: tuple[x509.Certificate, Any] | None = None,
) -> bytes:
    """The receipt of ``kind`` for the message ``referenced_id``, as the provider sends it,
    signed by ``signer`` (a provider certificate and its key: ``LocalCA.pec_signer``), else by
    a throw-away self-signed key no one trusts."""
    inner = EmailMessage()
    text = (
        f"Ricevuta: il giorno {at:%d/%m/%Y} alle ore {at:%H:%M:%S} ({at:%z}) il messaggio "
        f'"{subject}" proveniente da "{sender}" ed indirizzato a "{recipient}" '
        f"({kind}).\nIdentificativo messaggio: {referenced_id}\n"
    )
    if extended_error:
        text += f"Errore: {extended_error}\n"
    inner.set_content(text)
    inner.add_alternative(f"<p>{escape(text)}</p>", subtype="html")
    inner.make_mixed()
    inner.add_attachment(
        daticert(
            kind,
            sender=sender,
            recipient=recipient,
            subject=subject,
            referenced_id=referenced_id,
            at=at,
            error=error,
            extended_error=extended_error,
        ),
        maintype="application",
        subtype="xml",
        filename="daticert.xml",
    )
    if original is not None and kind == "avvenuta-consegna":
        returned = email.message_from_bytes(original, policy=email.policy.default)
        inner.add_attachment(returned, filename="postacert.eml")
    cert, key = signer or _signer()
    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(inner.as_bytes())
        .add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
    )
    headers = (
        f"From: posta-certificata@{PROVIDER_DOMAIN}\r\n"
        f"To: {sender}\r\n"
        f"Subject: {SUBJECTS[kind]}: {subject}\r\n"
        f"Date: {format_datetime(at)}\r\n"
        f"Message-ID: {make_msgid(domain=PROVIDER_DOMAIN)}\r\n"
        f"X-Ricevuta: {kind}\r\n"
        f"X-Riferimento-Message-ID: {referenced_id}\r\n"
        "X-Verificasicurezza: positivo\r\n"
    ).encode()
    return headers + signed.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
