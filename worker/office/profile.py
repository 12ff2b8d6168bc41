"""The profile template every office copies: built once (copy uno/profile, init through the launcher), cached.

LibreOffice's first start on a new profile asks to be restarted (exit 81) and self-tests its graphics (~0.8 s):
paying both once here keeps every office start at ~0.6 s. The CLI (`worker warm-profile`), the pool, the tests'
template fixture and the bench scripts all build their template with build_template().
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO

from worker.config import OfficeSettings
from worker.errors import Reason, WorkerError
from worker.office.launch import free_port, launcher_command, launcher_files, lifeline_fd
from worker.office.sandbox import Sandbox, SandboxMode, probe

log = logging.getLogger(__name__)

INIT_MARKER = ".docworker-initialised"
# Layer 3 is on when the template blocks untrusted links and, where the office shares the worker's network, every
# instance's copy also routes every protocol to a dead proxy (uno/dead-proxy.xcu, added by add_dead_proxy).
PROFILE_LAYER_SETTINGS = (r'name="BlockUntrustedRefererLinks"[^>]*><value>true<',)
DEAD_PROXY_SETTINGS = (
    r'name="ooInetProxyType"[^>]*><value>1<',
    r'name="ooInetNoProxy"[^>]*>(?:<value\s*/>|<value></value>)',
)
DEAD_PROXY_FRAGMENT = "dead-proxy.xcu"


def build_template(settings: OfficeSettings, out: Path | None = None, log_file: IO[bytes] | None = None,
                   sandbox: Sandbox | None = None) -> Path:
    """An initialised template: rebuilt at `out` from uno/profile, or else the pool's (cached) one; returns it.

    Without `out`: OFFICE_PROFILE_TEMPLATE as it is when it was initialised already, otherwise an initialised copy
    of it (or of uno/profile) in the cache, keyed by profile_cache_dir() and built once. Warns when the template
    does not record the office version, which makes every office start pay the graphics self-test.
    """
    if out is not None:
        template = _build_at(settings.uno_dir / "profile", out, settings, log_file, sandbox, replace=True)
    else:
        template = _cached_template(settings, log_file, sandbox)
    if not records_office_version(template):
        log.warning("profile template %s does not record the office version, so every office start runs "
                    "LibreOffice's graphics self-test (~0.8 s); rebuild it with `worker warm-profile` if it is "
                    "OFFICE_PROFILE_TEMPLATE, otherwise see office.log for why init could not record it", template)
    return template


def _cached_template(settings: OfficeSettings, log_file: IO[bytes] | None, sandbox: Sandbox | None) -> Path:
    given = settings.profile_template
    if given is not None and (given / INIT_MARKER).exists():
        return given
    source = given or (settings.uno_dir / "profile")
    target = profile_cache_dir(source, settings)
    if (target / INIT_MARKER).exists():
        return target
    return _build_at(source, target, settings, log_file, sandbox, replace=False)


def _build_at(source: Path, target: Path, settings: OfficeSettings, log_file: IO[bytes] | None,
              sandbox: Sandbox | None, *, replace: bool) -> Path:
    """Copy, init, then rename into place: concurrent builders never see a half-built profile.

    replace=False (the cache): when another builder won the race its copy is as good, and ours is dropped.
    """
    building = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}")
    shutil.rmtree(building, ignore_errors=True)
    shutil.copytree(source, building)
    try:
        init_profile(settings, building, log_file, sandbox)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if replace:
        shutil.rmtree(target, ignore_errors=True)
    try:
        building.rename(target)
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
        if replace:
            raise
    return target


def profile_cache_dir(source: Path, settings: OfficeSettings) -> Path:
    """Where the initialised copy of a profile template lives.

    Keyed by the template's content, the launcher (it writes into the profile at init) and the office binary
    itself: a profile initialised by an older LibreOffice would make a newer one self-test at every start.
    """
    digest = hashlib.sha256(settings.soffice.encode())
    try:
        office = os.stat(settings.soffice)
        digest.update(f"{office.st_size}:{office.st_mtime_ns}".encode())
    except OSError:
        pass  # no office there: the init fails with office_unavailable, which says so
    digest.update((settings.uno_dir / "launcher.py").read_bytes())
    for path in sorted(source.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(source)).encode())
            digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "docworker"
    base.mkdir(parents=True, exist_ok=True)
    return base / f"profile-{digest.hexdigest()[:16]}"


def _registry(profile: Path) -> str | None:
    try:
        return (profile / "user" / "registrymodifications.xcu").read_text(errors="replace")
    except OSError:
        return None


def records_office_version(profile: Path) -> bool:
    """Whether the launcher's init recorded the office version in this profile (see uno/launcher.py)."""
    xcu = _registry(profile)
    return xcu is not None and "ooSetupLastVersion" in xcu


def profile_blocks_remote(profile: Path, uno_dir: Path, *, network_isolated: bool) -> bool:
    """Whether layer 3 is on: the template blocks untrusted links, and without a network namespace every instance
    gets the dead proxy too."""
    xcu = _registry(profile)
    if xcu is None or not all(re.search(pattern, xcu) for pattern in PROFILE_LAYER_SETTINGS):
        return False
    if network_isolated:
        return True
    try:
        fragment = (uno_dir / DEAD_PROXY_FRAGMENT).read_text()
    except OSError:
        return False
    return all(re.search(pattern, fragment) for pattern in DEAD_PROXY_SETTINGS)


def add_dead_proxy(profile: Path, uno_dir: Path) -> None:
    """Route every protocol of this office's own profile copy to a proxy that does not exist.

    Only where the office shares the worker's network: with a proxy configured LibreOffice 7.4 deadlocks on a pptx
    shape fill linking an external picture (held until the conversion timeout), and inside the network namespace
    the proxy stops nothing the namespace does not.
    """
    try:
        fragment = (uno_dir / DEAD_PROXY_FRAGMENT).read_text()
    except FileNotFoundError:
        return  # the start-up report already says profile=OFF (profile_blocks_remote)
    items = "\n".join(line for line in fragment.splitlines() if line.startswith("<item "))
    xcu = profile / "user" / "registrymodifications.xcu"
    text = xcu.read_text()
    end = text.rindex("</oor:items>")
    xcu.write_text(text[:end] + items + "\n" + text[end:])


def init_profile(settings: OfficeSettings, profile: Path, log_file: IO[bytes] | None,
                 sandbox: Sandbox | None = None) -> None:
    """Start LibreOffice once on a profile so later starts skip the first-run restart; mark it done.

    Through the same sandbox as every instance; it keeps the worker's uid (no document is loaded, and the template
    stays the worker's own).
    """
    sandbox = (sandbox or probe(SandboxMode(settings.sandbox), settings.uno_python, settings.work_dir,
                                launcher_files(settings))).as_worker()
    with tempfile.TemporaryDirectory(prefix="office-init-") as tmp:
        (Path(tmp) / "tmp").mkdir()
        cmd = launcher_command(settings, sandbox, Path(tmp), free_port(), "--init-only", profile=profile)
        try:
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, check=True,
                           env=sandbox.env(Path(tmp)), cwd=tmp, pass_fds=(lifeline_fd(),),
                           timeout=settings.start_timeout_s + 10, start_new_session=True)
        except subprocess.CalledProcessError as exc:
            raise WorkerError(Reason.OFFICE_UNAVAILABLE, f"LibreOffice ({settings.soffice}) could not initialise a "
                              f"profile: the launcher exited with {exc.returncode}; see office.log") from exc
        except (subprocess.TimeoutExpired, OSError) as exc:
            raise WorkerError(Reason.OFFICE_UNAVAILABLE,
                              f"LibreOffice ({settings.soffice}) could not initialise a profile: {exc}") from exc
    # the first start's graphics self-test log; an instance profile without one shows later starts skipped it
    (profile / "user" / "GraphicsRenderTests.log").unlink(missing_ok=True)
    (profile / INIT_MARKER).write_text("initialised by docworker\n")
