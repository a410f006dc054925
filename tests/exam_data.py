"""Test data: an exam folder (DICOM next to reports, protocols and the clutter a real folder holds)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.dicomgen import write_corpus, write_dicomdir, write_one
from xnat_uploader.core.dicom.index import DicomIndex, build_index
from xnat_uploader.core.dicom.scan import scan_paths

PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"


def make_exam(root: Path, seed: int = 0, dicomdir: bool = True) -> Path:
    """DICOM folder + PDF folder + loose protocol.txt + .DS_Store + a broken DICOM + a zip of DICOM + DICOMDIR.

    The DICOMDIR (with its IMAGES folder) holds another study; the rest is one study.
    """
    written = write_corpus(root / "DICOM", patients=1, series_per_study=2, instances_per_series=2, seed=seed)
    (root / "Reports").mkdir()
    (root / "Reports" / "report.pdf").write_bytes(PDF)
    (root / "Reports" / "sub").mkdir()
    (root / "Reports" / "sub" / "notes.txt").write_text("second page\n")
    (root / "Reports" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (root / "protocol.txt").write_text("protocol v2\n")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (root / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(64))
    full = write_one(root / "full.dcm", seed=seed + 90).read_bytes()
    (root / "full.dcm").unlink()
    (root / "IM_BROKEN").write_bytes(full[:300])
    # a zip holding one instance of the same study (moved out of the DICOM folder)
    with zipfile.ZipFile(root / "export.zip", "w") as z:
        z.write(written[-1].path, "IM_ZIP.dcm")
    written[-1].path.unlink()
    with zipfile.ZipFile(root / "docs.zip", "w") as z:
        z.writestr("consent.pdf", PDF)
    if dicomdir:
        write_dicomdir(root, seed=seed + 98)
    (root / "empty").mkdir()
    return root


def index_of(*paths: Path) -> DicomIndex:
    """Scan ``paths`` into a new index."""
    result = scan_paths([str(p) for p in paths])
    return build_index(result.instances, result.rejected)
