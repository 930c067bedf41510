"""PDFs written by hand for the tests: the objects given, and a correct classic
cross-reference table, so what a test changes is exactly what it means to."""

from __future__ import annotations

from io import BytesIO


def classic_pdf(objects: list[bytes]) -> bytes:
    """Objects 1..n (object 1 the catalog) and their cross-reference table."""
    out = BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()
