"""`make demo` runs `worker demo`: the whole local pipeline must produce a PDF and stop everything it started."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pikepdf

from worker.office.procfs import group_members

REPO = Path(__file__).resolve().parents[2]


def test_demo_converts_the_sample_and_stops_every_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "demo", "tests/data/sample.docx", "--once"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"PDF ready: gs://out-bucket/incoming/sample\.pdf \(\d+ bytes, 1 page", out), out
    # the second upload carries per-document options; its PDF is PDF/A-2B and records them
    assert re.search(r"PDF ready: gs://out-bucket/incoming/sample-pdfa\.pdf \(\d+ bytes, 1 page\(s\), PDF/A-2B, "
                     r"options docworker-pdfa=2b,docworker-watermark=DEMO\)", out), out
    # the same document through Gotenberg's route on the same worker: a PDF/A-2b comes back at once
    sync = re.search(r"synchronous route \(Gotenberg's POST /forms/libreoffice/convert, pdfa=PDF/A-2b\): HTTP 200 in "
                     r"\d+ ms, \d+ bytes; local copy (\S+)", out)
    assert sync, out
    with pikepdf.open(sync.group(1)) as doc:
        assert doc.open_metadata().get("pdfaid:part") == "2"
    assert "curl" in out and "upload/storage/v1/b/in-bucket/o" in out  # tells the user how to upload more
    assert "/forms/libreoffice/convert" in out.split("Upload more")[1]  # and how to convert while waiting
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", out)]
    assert len(pids) >= 3, out  # emulator, fake-gcs, worker
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or group_members(pid) == [], f"pid {pid} survived the demo"


def test_demo_keeps_running_until_ctrl_c_then_stops_everything() -> None:
    import os
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "demo", "tests/data/sample.docx"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "See the results" in line:
                break
        out = "".join(seen)
        assert "PDF ready" in out, out
        time.sleep(1)
        assert proc.poll() is None, "the demo should keep running for more uploads"
        os.kill(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(seen) + rest
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", out)]
    assert len(pids) >= 3, out
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or group_members(pid) == [], f"pid {pid} survived Ctrl-C"
