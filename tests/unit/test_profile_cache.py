"""Which initialised profile a pool reuses (a new launcher or a new office must never get an old template), and how
build_template puts one in place: built once, beside its target, renamed in; a failed init leaves the old one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from worker.config import OfficeSettings
from worker.errors import Reason, WorkerError
from worker.office import profile as profile_module
from worker.office.profile import (
    add_dead_proxy,
    build_template,
    profile_blocks_remote,
    profile_cache_dir,
    records_office_version,
)

REPO = Path(__file__).resolve().parents[2]


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


class FakeInit:
    """Stands in for the launcher's init (the real one runs in tests/integration): marks the profile, or fails."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.profiles: list[Path] = []

    def __call__(self, settings: OfficeSettings, profile: Path, *args: object) -> None:
        self.profiles.append(profile)
        if self.fail:
            raise WorkerError(Reason.OFFICE_UNAVAILABLE, "no office here")
        (profile / profile_module.INIT_MARKER).write_text("fake\n")


def test_build_template_builds_the_cached_template_once(parts: tuple[Path, Path, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    uno, source, office = parts
    init = FakeInit()
    monkeypatch.setattr(profile_module, "init_profile", init)
    settings = OfficeSettings(uno_dir=uno, soffice=str(office))
    first = build_template(settings)
    assert first == profile_cache_dir(source, settings) and (first / profile_module.INIT_MARKER).exists()
    assert build_template(settings) == first
    assert len(init.profiles) == 1 and init.profiles[0] != first  # built beside, then renamed into place
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # nothing half-built left


def test_an_initialised_given_template_is_used_as_it_is(parts: tuple[Path, Path, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    uno, source, office = parts
    init = FakeInit()
    monkeypatch.setattr(profile_module, "init_profile", init)
    (source / profile_module.INIT_MARKER).write_text("built by worker warm-profile\n")
    assert build_template(OfficeSettings(uno_dir=uno, soffice=str(office), profile_template=source)) == source
    assert init.profiles == []


def test_warm_profile_replaces_its_output_and_keeps_it_when_init_fails(
    parts: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uno, _, office = parts
    settings = OfficeSettings(uno_dir=uno, soffice=str(office))
    out = tmp_path / "image" / "profile"
    monkeypatch.setattr(profile_module, "init_profile", FakeInit())
    build_template(settings, out)
    (out / "stale-file").write_text("from an older build")
    build_template(settings, out)
    assert not (out / "stale-file").exists() and (out / profile_module.INIT_MARKER).exists()
    monkeypatch.setattr(profile_module, "init_profile", FakeInit(fail=True))
    with pytest.raises(WorkerError):
        build_template(settings, out)
    assert (out / profile_module.INIT_MARKER).exists()
    assert [p.name for p in out.parent.iterdir()] == ["profile"]


def test_the_dead_proxy_goes_only_into_an_office_sharing_the_workers_network(tmp_path: Path) -> None:
    """Layer 3: untrusted links blocked by the template; the dead proxy added per instance where needed."""
    copy = tmp_path / "profile"
    shutil.copytree(REPO / "uno" / "profile", copy)
    uno = REPO / "uno"
    assert 'name="ooInetProxyType"' not in (copy / "user" / "registrymodifications.xcu").read_text()
    assert profile_blocks_remote(copy, uno, network_isolated=True)
    assert profile_blocks_remote(copy, uno, network_isolated=False)  # the fragment is there to be added
    assert not profile_blocks_remote(copy, tmp_path, network_isolated=False)  # no fragment: layer 3 is off
    add_dead_proxy(copy, uno)
    xcu = (copy / "user" / "registrymodifications.xcu").read_text()
    assert 'name="ooInetProxyType" oor:op="fuse"><value>1<' in xcu
    assert xcu.rstrip().endswith("</oor:items>") and xcu.count("</oor:items>") == 1
    bare = tmp_path / "bare"
    shutil.copytree(REPO / "uno" / "profile", bare)
    xcu_path = bare / "user" / "registrymodifications.xcu"
    xcu_path.write_text(xcu_path.read_text().replace("BlockUntrustedRefererLinks", "SomethingElse"))
    assert not profile_blocks_remote(bare, uno, network_isolated=True)
