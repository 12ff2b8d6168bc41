"""Which initialised profile a pool reuses: a new launcher or a new office must never get an old template."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.config import OfficeSettings
from worker.office.profile import profile_cache_dir, records_office_version


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    uno = tmp_path / "uno"
    (uno / "profile" / "user").mkdir(parents=True)
    (uno / "profile" / "user" / "registrymodifications.xcu").write_text("<items/>")
    (uno / "launcher.py").write_text("# launcher v1\n")
    office = tmp_path / "soffice.bin"
    office.write_bytes(b"office v1")
    return uno, uno / "profile", office


def key(uno: Path, source: Path, office: Path) -> Path:
    return profile_cache_dir(source, OfficeSettings(uno_dir=uno, soffice=str(office)))


def test_the_same_parts_reuse_the_same_template(parts: tuple[Path, Path, Path]) -> None:
    assert key(*parts) == key(*parts)


def test_a_changed_launcher_gets_a_new_template(parts: tuple[Path, Path, Path]) -> None:
    uno, source, office = parts
    before = key(uno, source, office)
    (uno / "launcher.py").write_text("# launcher v2: writes something new into the profile at init\n")
    assert key(uno, source, office) != before


def test_an_upgraded_office_gets_a_new_template(parts: tuple[Path, Path, Path]) -> None:
    uno, source, office = parts
    before = key(uno, source, office)
    office.write_bytes(b"office v2, a different size")
    os.utime(office, ns=(1, 1))
    assert key(uno, source, office) != before


def test_a_changed_profile_source_gets_a_new_template(parts: tuple[Path, Path, Path]) -> None:
    uno, source, office = parts
    before = key(uno, source, office)
    (source / "user" / "registrymodifications.xcu").write_text("<items><item/></items>")
    assert key(uno, source, office) != before


def test_records_office_version_reads_the_profile(tmp_path: Path) -> None:
    xcu = tmp_path / "user" / "registrymodifications.xcu"
    assert not records_office_version(tmp_path)  # no file at all
    xcu.parent.mkdir(parents=True)
    xcu.write_text('<item oor:path="/org.openoffice.Setup/Office"/>')
    assert not records_office_version(tmp_path)
    xcu.write_text('<item oor:path="/org.openoffice.Setup/Product"><prop oor:name="ooSetupLastVersion">'
                   '<value>7.4</value></prop></item>')
    assert records_office_version(tmp_path)
