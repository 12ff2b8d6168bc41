"""How long LibreOffice takes on deeply nested documents, to set the sniffer's nesting limits (worker/xml_guard.py).

    .venv/bin/python bench/nesting.py [--depths 10,25,50,100,200] [--timeout 120] [--kinds docx-tables,...]

Each document goes straight to a warm pool of one office (no sniffing), one at a time, timeout as given; a kind
stops growing once one depth times out; "(text missing)" marks a PDF without the innermost text.
Prints a markdown table (seconds, or the failure reason).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import hostile_docs  # noqa: E402
from tests.integration.conftest_office import initialised_template, office_settings, running_pool  # noqa: E402
from worker.errors import WorkerError  # noqa: E402

SAMPLE_PPTX = REPO / "tests" / "data" / "sample.pptx"

KINDS: dict[str, tuple[str, str | None, Callable[[Path, int], Path]]] = {
    "docx-tables": (".docx", "MS Word 2007 XML", hostile_docs.make_nested_tables_docx),
    "odt-tables": (".odt", "writer8", hostile_docs.make_nested_tables_odt),
    "rtf-tables": (".rtf", "Rich Text Format", hostile_docs.make_nested_tables_rtf),
    "docx-sdt": (".docx", "MS Word 2007 XML", hostile_docs.make_nested_sdt_docx),
    "odt-spans": (".odt", "writer8", hostile_docs.make_nested_spans_odt),
    "rtf-groups": (".rtf", "Rich Text Format", hostile_docs.make_nested_groups_rtf),
    "pptx-groups": (".pptx", "Impress MS PowerPoint 2007 XML",
                    lambda p, d: hostile_docs.make_nested_groups_pptx(p, d, SAMPLE_PPTX)),
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depths", default="10,25,50,100,200")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    kinds = args.kinds.split(",")
    results: dict[str, dict[int, str]] = {kind: {} for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="nesting-") as tmp:
        root = Path(tmp)
        template = initialised_template(root / "template")
        settings = office_settings(root / "work", template, conversion_timeout_s=args.timeout, queue_wait_s=600)
        with running_pool(settings) as pool:
            for kind in kinds:
                suffix, import_filter, build = KINDS[kind]
                for depth in depths:
                    src = build(root / f"{kind}-{depth}{suffix}", depth)
                    t0 = time.monotonic()
                    try:
                        pool.convert(src, root / "out.pdf", import_filter)
                        outcome = f"{time.monotonic() - t0:.2f}"
                        text = subprocess.run(["pdftotext", str(root / "out.pdf"), "-"], capture_output=True,
                                              text=True, check=False).stdout
                        if f"depth {depth}" not in " ".join(text.split()):
                            outcome += " (text missing)"
                    except WorkerError as exc:
                        outcome = f"{exc.reason.value} after {time.monotonic() - t0:.1f}"
                    results[kind][depth] = outcome
                    print(f"{kind} depth {depth}: {outcome}", flush=True)
                    if not outcome[0].isdigit():
                        break
    print("\n| kind | " + " | ".join(f"depth {d}" for d in depths) + " |")
    print("|---|" + "---:|" * len(depths))
    for kind in kinds:
        print(f"| {kind} | " + " | ".join(results[kind].get(d, "-") for d in depths) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
