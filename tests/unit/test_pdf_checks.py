"""worker/pdf_checks.py logic that needs no PDF (the checks themselves run on real exports in
tests/integration/test_pdf_options.py)."""

from __future__ import annotations

from worker.options import from_metadata
from worker.pdf_checks import JPEG_LUMINANCE, expected_permissions, jpeg_table_sum


def test_every_jpeg_quality_has_its_own_table_sum() -> None:
    """A JPEG's quality is identified by the sum of its luminance table: it must be unambiguous."""
    sums = [jpeg_table_sum(q) for q in range(1, 101)]
    assert len(set(sums)) == 100
    assert jpeg_table_sum(50) == sum(JPEG_LUMINANCE)  # libjpeg's quality 50 is the standard table itself
    assert jpeg_table_sum(100) == 64  # every entry 1
    assert jpeg_table_sum(1) == sum(min(v * 50, 32767) for v in JPEG_LUMINANCE)


def test_expected_permissions_follow_the_options() -> None:
    everything = expected_permissions(from_metadata(None))
    assert everything == {"print_lowres": True, "print_highres": True, "modify_assembly": False,
                          "modify_form": True, "modify_annotation": True, "modify_other": True, "extract": True}
    locked = expected_permissions(from_metadata({"docworker-print": "lowres", "docworker-changes": "none",
                                                 "docworker-copy": "false"}))
    assert [name for name, allowed in locked.items() if allowed] == ["print_lowres"]
