"""Whether a PEC receipt is what it says: the provider's S/MIME signature checked, with its
chain, against the accredited providers the operator trusts.

A receipt is a ``multipart/signed`` message (DM 2 novembre 2005); anyone can send a mail that
looks like one. :func:`verify` runs ``openssl cms -verify`` (Debian's ``openssl``) on it with
``EMAILSETTINGS_PEC_TRUST_BUNDLE`` as the only trust anchors: the signature must match the
signed content, the signer's certificate must chain to the bundle and be valid now, and the
signer's address must be of the receipt's sender domain. Only then is the signed content (not
the message's unsigned outer parts) returned for reading. Without a bundle nothing verifies.

``-purpose any``: accredited providers' certificates do not all carry the S/MIME extended key
usage; the chain and the dates are still checked.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from email.utils import parseaddr

from cryptography import x509
from cryptography.x509.oid import NameOID

from emailsettings import conf

logger = logging.getLogger(__name__)

# openssl on a few kilobytes: a second at most; the limit only stops a hostile input.
_TIMEOUT = 10.0


@dataclass(frozen=True)
class Signature:
    """The verdict on one receipt. ``content``: the signed message, when verified."""

    verified: bool
    signer: str = ""
    reason: str = ""
    content: bytes = b""


def _openssl() -> str | None:
    return shutil.which("openssl")


def _signer_addresses(cert: x509.Certificate) -> list[str]:
    addresses: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        addresses += [str(value) for value in san.get_values_for_type(x509.RFC822Name)]
    except x509.ExtensionNotFound:
        pass
    for oid in (NameOID.EMAIL_ADDRESS, NameOID.COMMON_NAME):
        addresses += [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]
    return [a.strip().lower() for a in addresses if "@" in a]


def _signer_name(cert: x509.Certificate) -> str:
    for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME):
        names = cert.subject.get_attributes_for_oid(oid)
        if names:
            return str(names[0].value)[:200]
    return ""


def verify(raw: bytes, *, sender: str) -> Signature:
    """The verdict on the receipt ``raw`` sent by ``sender`` (its ``From``)."""
    bundle = conf.pec_trust_bundle()
    if not bundle or not os.path.isfile(bundle):
        return Signature(False, reason="nessun elenco di gestori PEC fidati configurato")
    openssl = _openssl()
    if openssl is None:
        logger.error("openssl is not installed: PEC receipts cannot be verified")
        return Signature(False, reason="verifica non disponibile")
    sender_domain = parseaddr(sender)[1].rpartition("@")[2].lower()
    if not sender_domain:
        return Signature(False, reason="mittente senza dominio")
    with tempfile.TemporaryDirectory(prefix="psicogest-pec-") as work:
        message, content, signer = (os.path.join(work, n) for n in ("in", "out", "signer"))
        with open(message, "wb") as handle:
            handle.write(raw)
        try:
            done = subprocess.run(
                [
                    openssl,
                    "cms",
                    "-verify",
                    "-inform",
                    "SMIME",
                    "-in",
                    message,
                    "-CAfile",
                    bundle,
                    "-purpose",
                    "any",
                    "-signer",
                    signer,
                    "-out",
                    content,
                ],
                capture_output=True,
                timeout=_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Signature(False, reason="verifica della firma scaduta")
        if done.returncode != 0:
            logger.info(
                "PEC receipt signature refused: %s", done.stderr[-200:].decode("ascii", "replace")
            )
            return Signature(False, reason="firma assente, non valida o di un gestore non fidato")
        try:
            with open(signer, "rb") as handle:
                cert = x509.load_pem_x509_certificates(handle.read())[0]
            with open(content, "rb") as handle:
                signed = handle.read()
        except (OSError, ValueError, IndexError):
            return Signature(False, reason="firma illeggibile")
    addresses = _signer_addresses(cert)
    if not any(a.rpartition("@")[2] == sender_domain for a in addresses):
        return Signature(
            False, reason="la firma è di un gestore diverso dal mittente della ricevuta"
        )
    return Signature(True, signer=_signer_name(cert) or addresses[0], content=signed)
