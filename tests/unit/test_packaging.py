"""The image installs the worker from a wheel: everything the pool reads at run time must be inside it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_carries_the_probe_documents(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    probes = {p.name for p in (REPO / "worker" / "office" / "probe").iterdir()}
    assert probes, "no probe documents in the source tree"
    for name in probes:
        assert f"worker/office/probe/{name}" in names
    assert "worker/cli.py" in names
    assert not any(n.startswith("uno/") for n in names)  # never an importable package named `uno`
