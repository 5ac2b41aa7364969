import pytest

from harness.docassist.documents import read_document, read_documents
from harness.errors import UserError


def _pdf_with_text(lines: list[str]) -> bytes:
    """A minimal but complete PDF 1.4 file (one page, Helvetica text), xref offsets computed."""
    ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({escaped}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (Quarterly Pump Report) >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)


def test_pdf_text_layer_and_title_are_read(tmp_path):
    pdf = tmp_path / "pumps.pdf"
    pdf.write_bytes(
        _pdf_with_text(
            ["Pump station 4 moved 12,400 litres per hour.", "Maintenance is due in March."]
        )
    )
    doc = read_document(pdf)
    assert doc.title == "Quarterly Pump Report"
    assert "Pump station 4 moved 12,400 litres per hour." in doc.text
    assert "Maintenance is due in March." in doc.text
    assert doc.doc_id == "pumps" and len(doc.sha256) == 64


def test_markdown_front_matter_is_metadata_not_text(tmp_path):
    md = tmp_path / "n.md"
    md.write_text(
        '---\ntitle: "Site Notes"\nkind: notes\n'
        'question: "When does the gate close?"\n---\n# Heading\n\nBody text.\n',
        encoding="utf-8",
    )
    doc = read_document(md)
    assert doc.title == "Site Notes" and doc.question == "When does the gate close?"
    assert doc.text.startswith("# Heading") and "kind:" not in doc.text


def test_folders_unique_ids_and_bad_input(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.txt").write_text("first", encoding="utf-8")
    (tmp_path / "b" / "x.txt").write_text("second", encoding="utf-8")
    docs = read_documents([tmp_path])
    assert sorted(d.doc_id for d in docs) == ["x", "x-2"]
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    with pytest.raises(UserError, match="unsupported document type"):
        read_documents([tmp_path / "img.png"])
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(UserError, match="no text"):
        read_document(tmp_path / "empty.txt")
    with pytest.raises(UserError, match="no such file"):
        read_documents([tmp_path / "missing.md"])
