"""What a synchronous request does to the PDFs after LibreOffice: merge them, write metadata, zip them (pikepdf).

Pure file-to-file functions; worker/sync_route.py calls them and verifies a merged PDF against its options again
(worker/pdf_checks.py), so a merge never answers a PDF that lost what was asked for.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pikepdf

from worker.gotenberg import DATE_KEYS, LIST_KEYS, METADATA_KEYS, parse_date


def merge_pdfs(sources: Sequence[Path], dst: Path) -> None:
    """The pages of every source, in order, in one PDF; the first source's catalog (XMP, OutputIntents) is kept,
    so a merge of PDF/A files keeps their PDF/A identification."""
    with pikepdf.open(sources[0]) as merged:
        others = [pikepdf.open(path) for path in sources[1:]]
        try:
            for other in others:
                merged.pages.extend(other.pages)
            merged.save(dst)
        finally:
            for other in others:
                other.close()


def write_metadata(path: Path, metadata: Mapping[str, Any]) -> None:
    """Gotenberg's `metadata` keys (already checked by worker/gotenberg.py) into XMP and the Info dictionary.

    pikepdf keeps the two in step, which PDF/A requires; Trapped has no XMP-to-Info mapping, so it is set as a name.
    """
    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        with pdf.open_metadata(set_pikepdf_as_editor=False) as xmp:
            for key, value in metadata.items():
                prop = METADATA_KEYS[key]
                if key in DATE_KEYS:
                    xmp[prop] = parse_date(value).isoformat()
                elif key in LIST_KEYS and isinstance(value, list):
                    xmp[prop] = list(value) if key == "Author" else ", ".join(value)
                elif key == "Author":
                    xmp[prop] = [value]
                else:
                    xmp[prop] = value
        if "Trapped" in metadata:
            pdf.docinfo[pikepdf.Name.Trapped] = pikepdf.Name("/" + metadata["Trapped"])
        pdf.save(path)


def zip_pdfs(entries: Sequence[tuple[str, Path]], dst: Path) -> None:
    """Several PDFs in one zip, each under its entry name (document.docx.pdf). PDFs are compressed already."""
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, path in entries:
            archive.write(path, arcname=name)
