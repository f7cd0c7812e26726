"""A minimal, valid one-page PDF for an invoice, written by hand (no PDF library needed).

Used by the demo data and the tests; a real PsicoGest installation attaches the PDF its
invoicing module produced.
"""

from __future__ import annotations

from decimal import Decimal


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def invoice_pdf_bytes(*, number: str, patient: str, total: Decimal, padding: int = 0) -> bytes:
    """Return a PDF showing the invoice number, patient and total.

    ``padding`` adds a comment of that many bytes, for benchmarks that need bigger files.
    """
    lines = [f"Fattura n. {number}", f"Intestata a: {patient}", f"Totale: EUR {total}"]
    text_ops = (
        "BT /F1 14 Tf 72 760 Td 18 TL "
        + " ".join(
            f"({_escape(line.encode('latin-1', 'replace').decode('latin-1'))}) Tj T*"
            for line in lines
        )
        + " ET"
    )
    stream = text_ops.encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    if padding:
        out += b"%" + b"x" * padding + b"\n"
    offsets = []
    for index, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % index + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref_at,
    )
    return bytes(out)
