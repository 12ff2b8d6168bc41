"""The office sandbox against real LibreOffice and bubblewrap: each layer on its own, the fallback, the start report.

Layers (worker/office/sandbox.py, docs/operations.md): network (own network namespace, only loopback), filesystem
(own mount namespace: the install, the instance directory, nothing else), user (the office runs as uid 65534 when
the worker is root), profile (untrusted links blocked; a dead proxy where the office shares the network). Each
layer is shown stopping a linked-image document on its own, against a control where the same document does reach
the canary server and does copy the secret into its PDF.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.integration.conftest_office import (
    DATA,
    REPO,
    CountingServer,
    initialised_template,
    office_settings,
    pdf_text,
    running_pool,
)
from worker.conversion import convert_file
from worker.errors import Reason, WorkerError
from worker.metrics import Metrics
from worker.office import OfficePool
from worker.office.instance import OfficeInstance, OfficeOutputError
from worker.office.sandbox import OFFICE_UID, Sandbox, SandboxMode

pytestmark = pytest.mark.office

SECRET_TEXT = "SECRETMARKER4711"
CANARY_ENV = "DOCWORKER_TEST_CANARY_ENV"
CANARY_VALUE = "canary-env-value-4711"
FORMATS = ("docx", "xlsx", "pptx", "odt")
ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"'
)
FAKE_BWRAP = "#!/bin/sh\necho 'bwrap: Creating new namespace failed: Operation not permitted' >&2\nexit 1\n"


# -- documents and fixtures ------------------------------------------------------------------------------------------


def make_linked_images(path: Path, url: str, secret: Path) -> Path:
    """A flat ODF spreadsheet (.fods) or presentation (.fodp) with two linked images: one at `url`, one the secret.

    Calc and Impress shapes: vectors the Writer-only link setting never covered (issue 11).
    """
    def frame(href: str, y: int) -> str:
        return (f'<draw:frame svg:x="1cm" svg:y="{y}cm" svg:width="6cm" svg:height="2cm"><draw:image '
                f'xlink:href="{href}" xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"/></draw:frame>')

    frames = frame(url, 2) + frame(secret.as_uri(), 6)
    if path.suffix == ".fods":
        kind = "spreadsheet"
        body = (f'<office:spreadsheet><table:table table:name="S"><table:shapes>{frames}</table:shapes>'
                '<table:table-row><table:table-cell office:value-type="string"><text:p>docworker sandbox sheet'
                '</text:p></table:table-cell></table:table-row></table:table></office:spreadsheet>')
    else:
        kind = "presentation"
        body = f'<office:presentation><draw:page draw:name="p1">{frames}</draw:page></office:presentation>'
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?><office:document {ODF_NS} office:version="1.2" '
                    f'office:mimetype="application/vnd.oasis.opendocument.{kind}"><office:body>{body}</office:body>'
                    '</office:document>')
    return path


def write_secret(directory: Path, mode: int) -> Path:
    """An SVG whose text would show up in a PDF's text if the office ever read it."""
    directory.mkdir(parents=True, exist_ok=True)
    secret = directory / "secret.svg"
    secret.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="60"><text x="5" y="40" '
                      f'font-size="24">{SECRET_TEXT}</text></svg>')
    secret.chmod(mode)
    return secret


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return initialised_template(tmp_path_factory.getbasetemp() / "office-template")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user can pass (pytest's own tmp dirs are root's only): work dirs the office user reaches."""
    path = Path(tempfile.mkdtemp(prefix="docworker-sandbox-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def path_with_refusing_bwrap(tmp_path: Path) -> str:
    """A PATH whose bwrap fails the way it does where the platform refuses namespaces: forces the fallback."""
    fake = tmp_path / "fake-bin"
    fake.mkdir(exist_ok=True)
    (fake / "bwrap").write_text(FAKE_BWRAP)
    (fake / "bwrap").chmod(0o755)
    return f"{fake}:{os.environ['PATH']}"


@pytest.fixture
def refused_namespaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", path_with_refusing_bwrap(tmp_path))


@pytest.fixture
def canary() -> Iterator[CountingServer]:
    with CountingServer() as server:
        yield server


def bare_template(base: Path, drop: tuple[str, ...]) -> Path:
    """uno/profile without the settings named in `drop`: a profile layer switched off, so another layer is alone."""
    target = base / f"profile-without-{'-'.join(d[:8] for d in drop)}"
    shutil.copytree(REPO / "uno" / "profile", target)
    xcu = target / "user" / "registrymodifications.xcu"
    xcu.write_text("\n".join(line for line in xcu.read_text().splitlines() if not any(d in line for d in drop)))
    return target


NO_PROFILE_LAYER = ("BlockUntrustedRefererLinks", "ooInet")


def uno_dir_without_dead_proxy(base: Path) -> Path:
    """uno/ without dead-proxy.xcu, so an office sharing the worker's network gets no proxy: layer 3 fully off."""
    target = base / "uno-without-dead-proxy"
    target.mkdir(mode=0o755)
    shutil.copy2(REPO / "uno" / "launcher.py", target / "launcher.py")
    return target


def office_pid(pool: OfficePool) -> int:
    (inst,) = pool.instances()
    assert inst.office_pid is not None
    return inst.office_pid


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def convert_linked(pool: OfficePool, canary: CountingServer, secret: Path, tmp: Path) -> str:
    """Convert the .fods and the .fodp; return the text of both PDFs (each must be a PDF with its pages).

    The secret's text is what gives it away: LibreOffice renders the SVG, it never copies its bytes.
    """
    texts = []
    for suffix in (".fods", ".fodp"):
        src = make_linked_images(tmp / f"linked{suffix}", canary.url(f"/linked{suffix}.png"), secret)
        out = tmp / f"linked{suffix}.pdf"
        pool.convert(src, out, None)
        pages, text = pdf_text(out)
        assert pages >= 1
        assert secret.read_bytes() not in out.read_bytes()
        texts.append(text)
    return " ".join(texts)


# -- layers 1 and 2: what the office can see -----------------------------------------------------------------------


def test_sandboxed_office_has_only_loopback_and_none_of_the_workers_env_files_or_processes(
    tmp_path: Path, template: Path, open_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(CANARY_ENV, CANARY_VALUE)
    secret = write_secret(open_dir / "readable-by-all", 0o644)  # world-readable: only the mount namespace hides it
    with caplog.at_level(logging.INFO, logger="worker.office.pool"), \
            running_pool(office_settings(tmp_path / "work", template, sandbox="bwrap")) as pool:
        pid = office_pid(pool)
        (inst,) = pool.instances()
        # network: its own namespace, and nothing in it but loopback
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        interfaces = [line.split(":")[0].strip() for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]]
        assert interfaces == ["lo"]
        # environment: only what LibreOffice needs, none of the worker's
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert f"HOME={inst.dir}".encode() in environ.split(b"\0")
        assert CANARY_VALUE.encode() not in environ and b"PYTEST_CURRENT_TEST" not in environ
        # files: its own mount view (seen through /proc/<pid>/root): its instance, not the secret, not the worker
        root = Path(f"/proc/{pid}/root")
        assert (root / inst.dir.relative_to("/") / "profile" / "user").is_dir()
        assert (root / "usr/lib/libreoffice/program/soffice.bin").exists()
        assert secret.exists() and not (root / secret.relative_to("/")).exists()
        assert not (root / REPO.relative_to("/") / "worker").exists()
        assert os.listdir(root / tmp_path.relative_to("/")) == ["work"]  # only the way to its instance
        assert not (root / "etc/shadow").exists() and not (root / "root").exists()
        # processes: its own pid namespace; the worker is not in it
        assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
        visible = [e for e in os.listdir(root / "proc") if e.isdigit()]
        assert len(visible) < 10, visible  # bwrap's init, the launcher, soffice.bin (and maybe its helpers)
        programs = {Path((root / "proc" / e / "cmdline").read_bytes().split(b"\0")[0].decode()).name for e in visible}
        assert programs <= {"bwrap", "python3", "soffice.bin"}, programs  # not the worker (pytest's python)
        own = Path("/proc/self/cmdline").read_bytes()
        assert all((root / "proc" / e / "cmdline").read_bytes() != own for e in visible)
        # user: not the worker's uid when the worker is root
        assert uid_of(pid) == (OFFICE_UID if os.geteuid() == 0 else os.geteuid())
        assert pool.sandbox_layers == {"network": True, "filesystem": True, "user": os.geteuid() == 0,
                                       "profile": True}
    assert "office sandbox: network=on filesystem=on" in caplog.text


def test_a_job_sees_only_its_own_input(tmp_path: Path, template: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs are staged in the instance's jobs area one at a time; nothing of other jobs is left there."""
    seen: list[list[str]] = []
    real_call = OfficeInstance._call

    def recording(self: OfficeInstance, timeout: float, method: str, *params: object) -> object:
        if method == "convert":
            seen.append(sorted(str(p.relative_to(self.dir)) for p in (self.dir / "jobs").rglob("*")))
        return real_call(self, timeout, method, *params)

    with running_pool(office_settings(tmp_path / "work", template, sandbox="bwrap")) as pool:
        monkeypatch.setattr(OfficeInstance, "_call", recording)
        for ext in ("docx", "odt"):
            src = DATA / f"sample.{ext}"
            convert_file(pool, src, tmp_path / f"{ext}.pdf", src.name, tmp_path)
        (inst,) = pool.instances()
        assert list((inst.dir / "jobs").iterdir()) == []
    assert len(seen) == 2
    for listing in seen:
        assert len(listing) == 2 and listing[1].endswith(("input.docx", "input.odt")), listing


# -- each layer on its own against a linked-image document ---------------------------------------------------------


def test_control_without_any_layer_the_document_reaches_the_canary_and_copies_the_secret(
    tmp_path: Path, open_dir: Path, canary: CountingServer
) -> None:
    """CONTROL: proves the layer tests below can fail; no sandbox and no profile layer, as root."""
    secret = write_secret(tmp_path / "private", 0o600)
    template = bare_template(tmp_path, NO_PROFILE_LAYER)
    settings = office_settings(open_dir / "work", template, sandbox="off",
                               uno_dir=uno_dir_without_dead_proxy(open_dir))
    with running_pool(settings) as pool:
        assert pool.sandbox_layers == {"network": False, "filesystem": False, "user": False, "profile": False}
        text = convert_linked(pool, canary, secret, tmp_path)
    assert any(r.startswith("GET /linked.fods.png") for r in canary.requests), canary.requests
    assert SECRET_TEXT in text


def test_network_and_filesystem_layers_alone_stop_the_fetch_and_the_secret(
    tmp_path: Path, open_dir: Path, canary: CountingServer
) -> None:
    secret = write_secret(open_dir / "readable-by-all", 0o644)
    template = bare_template(tmp_path, NO_PROFILE_LAYER)
    with running_pool(office_settings(tmp_path / "work", template, sandbox="bwrap")) as pool:
        assert pool.sandbox_layers["network"] and pool.sandbox_layers["filesystem"]
        assert not pool.sandbox_layers["profile"]
        text = convert_linked(pool, canary, secret, tmp_path)
    assert canary.requests == []
    assert SECRET_TEXT not in text


def test_user_layer_alone_keeps_the_workers_files_out_of_the_pdf(
    tmp_path: Path, open_dir: Path, canary: CountingServer, refused_namespaces: None
) -> None:
    """Namespaces refused, worker root: the office runs as uid 65534 and cannot read the worker's 0600 files."""
    if os.geteuid() != 0:
        pytest.fail("this test needs a root worker (the fallback's user layer exists only then)")
    secret = write_secret(tmp_path / "private", 0o600)
    template = bare_template(tmp_path, NO_PROFILE_LAYER)
    settings = office_settings(open_dir / "work", template, sandbox="auto",
                               uno_dir=uno_dir_without_dead_proxy(open_dir))
    with running_pool(settings) as pool:
        assert pool.sandbox_layers == {"network": False, "filesystem": False, "user": True, "profile": False}
        assert uid_of(office_pid(pool)) == OFFICE_UID
        text = convert_linked(pool, canary, secret, tmp_path)
    assert SECRET_TEXT not in text
    assert canary.requests, "with no network layer and no profile layer the fetch must happen (layer alone)"


def test_profile_layer_alone_stops_the_fetch_and_the_secret(
    tmp_path: Path, open_dir: Path, template: Path, canary: CountingServer
) -> None:
    secret = write_secret(open_dir / "readable-by-all", 0o644)
    with running_pool(office_settings(open_dir / "work", template, sandbox="off")) as pool:
        assert pool.sandbox_layers == {"network": False, "filesystem": False, "user": False, "profile": True}
        text = convert_linked(pool, canary, secret, tmp_path)
    assert canary.requests == []
    assert SECRET_TEXT not in text


def test_dead_proxy_alone_stops_the_fetch(tmp_path: Path, open_dir: Path, canary: CountingServer) -> None:
    """Without BlockUntrustedRefererLinks: the proxy settings on their own still keep the canary silent."""
    secret = write_secret(open_dir / "readable-by-all", 0o644)
    template = bare_template(tmp_path, ("BlockUntrustedRefererLinks",))
    with running_pool(office_settings(open_dir / "work", template, sandbox="off")) as pool:
        convert_linked(pool, canary, secret, tmp_path)
    assert canary.requests == []


# -- the start report, the fallback and the modes ---------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "refuse", "layers", "root_uid"), [
    ("auto", False, {"network": 1, "filesystem": 1, "user": 1, "profile": 1}, OFFICE_UID),
    ("auto", True, {"network": 0, "filesystem": 0, "user": 1, "profile": 1}, OFFICE_UID),
    ("off", False, {"network": 0, "filesystem": 0, "user": 0, "profile": 1}, 0),
], ids=["bwrap", "fallback", "off"])
def test_every_mode_converts_and_says_at_start_which_layers_are_on(
    tmp_path: Path, template: Path, open_dir: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, mode: str, refuse: bool, layers: dict[str, int], root_uid: int,
) -> None:
    if os.geteuid() != 0:
        pytest.fail("these expectations are for a root worker (the CI host and the image run as root)")
    if refuse:
        monkeypatch.setenv("PATH", path_with_refusing_bwrap(tmp_path))
    with caplog.at_level(logging.INFO, logger="worker.office.pool"), \
            running_pool(office_settings(open_dir / "work", template, sandbox=mode)) as pool:
        for ext in FORMATS:
            src = DATA / f"sample.{ext}"
            out = tmp_path / f"{ext}.pdf"
            convert_file(pool, src, out, src.name, tmp_path)
            assert f"docworker sample {ext}" in pdf_text(out)[1]
        pid = office_pid(pool)
        assert uid_of(pid) == root_uid
        same_net = os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
        assert same_net is not bool(layers["network"])
        # the dead proxy only where the office shares the network: inside the namespace it would only add a hang
        (inst,) = pool.instances()
        own_profile = (inst.dir / "profile" / "user" / "registrymodifications.xcu").read_text()
        assert ('name="ooInetProxyType"' in own_profile) is not bool(layers["network"])
        exposition = Metrics(CollectorRegistry(), pool).exposition().decode()
    for layer, on in layers.items():
        assert f'worker_office_sandbox{{layer="{layer}"}} {float(on)}' in exposition, exposition
    summary = " ".join(f"{layer}={'on' if on else 'OFF'}" for layer, on in layers.items())
    record = next(r for r in caplog.records if r.getMessage().startswith("office sandbox:"))
    assert summary in record.getMessage()
    assert record.levelno == (logging.INFO if all(layers.values()) else logging.WARNING)
    if refuse:
        assert "Operation not permitted" in record.getMessage()
    if mode == "off":
        assert "OFFICE_SANDBOX=off" in record.getMessage()


def test_bwrap_mode_refuses_to_start_where_namespaces_are_refused(
    tmp_path: Path, template: Path, refused_namespaces: None
) -> None:
    pool = OfficePool(office_settings(tmp_path / "work", template, sandbox="bwrap"))
    try:
        with pytest.raises(WorkerError) as caught:
            pool.start(give_up_on_failure=True)
    finally:
        pool.stop()
    assert caught.value.reason is Reason.OFFICE_UNAVAILABLE
    assert "OFFICE_SANDBOX=bwrap" in caught.value.message and "Operation not permitted" in caught.value.message


def test_an_unprivileged_worker_gets_network_and_filesystem_layers_through_a_user_namespace(open_dir: Path) -> None:
    """The image's non-root case: a worker running as uid 65534 starts bwrap with --unshare-user itself."""
    if os.geteuid() != 0:
        pytest.fail("needs root to start the unprivileged worker")
    for sub in ("work", "cache"):
        (open_dir / sub).mkdir()
        os.chown(open_dir / sub, OFFICE_UID, OFFICE_UID)
    child = (
        "import json, os, sys; from pathlib import Path; "
        "from worker.config import OfficeSettings; from worker.office import OfficePool; "
        "from worker.conversion import convert_file; "
        "work = Path(sys.argv[1]); pool = OfficePool(OfficeSettings(work_dir=work, pool_size=1, sandbox='bwrap')); "
        "pool.start(give_up_on_failure=True); (inst,) = pool.instances(); pid = inst.office_pid; "
        "src = Path(sys.argv[2]); convert_file(pool, src, work / 'out.pdf', src.name, work); "
        "print(json.dumps({'layers': pool.sandbox_layers, 'uid': os.stat(f'/proc/{pid}').st_uid, "
        "'netns': os.readlink(f'/proc/{pid}/ns/net') != os.readlink('/proc/self/ns/net'), "
        "'pdf': (work / 'out.pdf').read_bytes()[:5].decode()})); pool.stop()"
    )
    site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", child, str(open_dir / "work"), str(DATA / "sample.docx")],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{site}", "XDG_CACHE_HOME": str(open_dir / "cache"),
             "HOME": str(open_dir / "cache")},
        cwd=REPO, user=OFFICE_UID, group=OFFICE_UID, extra_groups=[], capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"layers": {"network": True, "filesystem": True, "user": False, "profile": True},
                      "uid": OFFICE_UID, "netns": True, "pdf": "%PDF-"}


def test_bwrap_started_as_the_office_user_in_a_user_namespace(tmp_path: Path, template: Path, open_dir: Path) -> None:
    """The second choice of a root worker (its root lacks CAP_SYS_ADMIN, as under Docker's default capabilities):
    bwrap itself runs as uid 65534 with --unshare-user, so the office is that uid outside the sandbox too."""
    if os.geteuid() != 0:
        pytest.fail("needs a root worker")
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    sandbox = Sandbox(SandboxMode.BWRAP, bwrap, unshare_user=True, office_uid=OFFICE_UID, start_as=OFFICE_UID)
    settings = office_settings(open_dir / "work", template)
    settings.work_dir.mkdir()
    with (tmp_path / "office.log").open("ab") as log:
        inst = OfficeInstance(settings, "as-office-user", template, log, sandbox)
        try:
            inst.start()
            inst.wait_ready(60)
            assert inst.office_pid is not None and inst.popen is not None
            assert uid_of(inst.popen.pid) == OFFICE_UID  # bwrap itself, not only what runs inside
            assert uid_of(inst.office_pid) == OFFICE_UID
            assert os.readlink(f"/proc/{inst.office_pid}/ns/net") != os.readlink("/proc/self/ns/net")
            assert os.readlink(f"/proc/{inst.office_pid}/ns/user") != os.readlink("/proc/self/ns/user")
            out = tmp_path / "out.pdf"
            inst.convert(DATA / "sample.docx", out, "MS Word 2007 XML", timeout=60)
            assert "docworker sample docx" in pdf_text(out)[1]
        finally:
            inst.stop()
    assert not inst.dir.exists()


@pytest.mark.parametrize("plant", ["symlink", "hardlink"])
def test_a_compromised_office_cannot_hand_back_a_worker_file_as_its_pdf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plant: str
) -> None:
    """Logic only (the office is played by a stand-in): the office owns its job directory and could put a link to
    a file of the worker's where its PDF belongs; the worker must refuse it, not copy the file into the output."""
    secret = write_secret(tmp_path / "worker-private", 0o600)
    inst = OfficeInstance(office_settings(tmp_path / "work", tmp_path), "stand-in", tmp_path, io.BytesIO())

    def compromised_office(self: OfficeInstance, timeout: float, method: str, *params: object) -> object:
        out = Path(str(params[1]))
        assert Path(str(params[0])).read_bytes() == (DATA / "sample.docx").read_bytes()  # its input was staged
        (out.symlink_to if plant == "symlink" else out.hardlink_to)(secret)
        return True

    monkeypatch.setattr(OfficeInstance, "_call", compromised_office)
    dst = tmp_path / "out.pdf"
    with pytest.raises(OfficeOutputError):
        inst.convert(DATA / "sample.docx", dst, None, timeout=5)
    assert not dst.exists() or SECRET_TEXT.encode() not in dst.read_bytes()
    assert secret.read_text().count(SECRET_TEXT) == 1  # untouched
    assert list((inst.dir / "jobs").iterdir()) == []
