"""Every setting, read from the environment and validated once at start, with all problems reported together."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from worker import options
from worker.errors import Reason, WorkerError

T = TypeVar("T")

# Every name a document we convert is commonly saved under (worker/formats.py; the test keeps them in step).
# Only the push filter reads these: what a file is, and how it loads, is decided from its bytes.
DEFAULT_SUFFIXES = (
    ".docx", ".docm", ".dotx", ".dotm", ".doc", ".dot", ".odt", ".ott", ".fodt", ".rtf", ".txt",
    ".wps", ".wri", ".wpd", ".wp", ".wp5", ".wp6", ".sdw", ".sxw", ".pages",
    ".xlsx", ".xlsm", ".xltx", ".xltm", ".xlsb", ".xls", ".xlt", ".ods", ".ots", ".fods", ".csv", ".dif",
    ".wk1", ".wks", ".wk3", ".wk4", ".123", ".sdc", ".sxc", ".numbers",
    ".pptx", ".pptm", ".ppsx", ".ppsm", ".potx", ".potm", ".ppt", ".pps", ".pot", ".odp", ".otp", ".fodp",
    ".sdd", ".sxi", ".key",
    ".odg", ".otg", ".fodg", ".sda", ".sxd", ".vsd", ".vsdx", ".vsdm", ".pub",
    # Not converted, but common enough that its owner should get the failure record saying what to do instead.
    ".hwp",
)
REPO_ROOT = Path(__file__).resolve().parent.parent


def _find_uno_dir() -> Path:
    """uno/ sits beside the package in a checkout, in the working directory, or at /opt/docworker/uno in the image."""
    for candidate in (REPO_ROOT / "uno", Path.cwd() / "uno", Path("/opt/docworker/uno")):
        if (candidate / "launcher.py").is_file():
            return candidate
    return REPO_ROOT / "uno"


# Measured under the stress campaign (docs/stress.md): a launcher ~35 MB, a freshly warmed office 170-215 MB,
# the worker 70-90 MB; an office grows at most ~70 MB/s, so ~18 MB between two checks of the kill limit.
LAUNCHER_MB, SPARE_OFFICE_MB, WORKER_MB, KILL_CHECK_SLACK_MB = 48, 256, 128, 64


@dataclass(frozen=True)
class OfficeSettings:
    """How the pool runs LibreOffice; `worker convert` needs only this part."""

    pool_size: int = field(default_factory=lambda: os.cpu_count() or 1)
    conversion_timeout_s: float = 120.0
    max_conversions: int = 500
    max_rss_mb: int = 1024  # planned recycle between conversions above this
    rss_kill_mb: int = 0  # hard limit: an office above it is killed mid-conversion; 0 -> 1.5 x max_rss_mb
    queue_size: int = 0  # 0 -> 2 x pool_size
    queue_wait_s: float = 0.0  # 0 -> conversion_timeout_s
    start_timeout_s: float = 60.0
    update_indexes: bool = False
    soffice: str = "/usr/lib/libreoffice/program/soffice.bin"
    uno_python: str = "/usr/bin/python3"
    uno_dir: Path = field(default_factory=_find_uno_dir)
    profile_template: Path | None = None  # None -> uno/profile, initialised once into work_dir
    work_dir: Path = field(default_factory=lambda: Path(os.environ.get("TMPDIR", "/tmp")) / "docworker")
    sandbox: str = "auto"  # auto | bwrap | off: the office's namespaces (worker/office/sandbox.py)

    @property
    def effective_rss_kill_mb(self) -> int:
        return self.rss_kill_mb or self.max_rss_mb * 3 // 2

    @property
    def memory_ceiling_mb(self) -> int:
        """RSS worst case of the worker and its offices: every office at its kill limit while a spare warms up
        beside it (planned recycles start the spare early, and both slots tend to recycle together)."""
        per_slot = self.effective_rss_kill_mb + KILL_CHECK_SLACK_MB + SPARE_OFFICE_MB + 2 * LAUNCHER_MB
        return self.pool_size * per_slot + WORKER_MB

    @property
    def effective_queue_size(self) -> int:
        return self.queue_size or 2 * self.pool_size

    @property
    def effective_queue_wait_s(self) -> float:
        return self.queue_wait_s or self.conversion_timeout_s


@dataclass(frozen=True)
class Config:
    """The worker's whole configuration."""

    output_bucket: str
    office: OfficeSettings
    output_prefix: str = ""
    input_buckets: tuple[str, ...] = ()
    input_suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
    max_input_bytes: int = 100 * 2**20
    auth_mode: str = "platform"
    auth_audience: str | None = None
    push_service_account: str | None = None
    auth_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    port: int = 8080
    metrics_port: int | None = None
    shutdown_grace_s: float = 8.0
    max_delivery_attempts: int = 5
    google_cloud_project: str | None = None
    log_format: str = "json"
    max_body_bytes: int = 16 * 2**20  # above Pub/Sub's largest push (10 MB message, base64)
    pdf_defaults: options.PdfOptions = options.DEFAULT  # PDF_* variables; each upload's metadata overrides them
    secrets_dir: Path | None = None  # SECRETS_DIR: the operator's mounted secrets (docs/options.md)
    # The synchronous Gotenberg route (worker/sync_route.py, docs/operations.md): at most sync_max_offices offices
    # convert for it at once, so the rest stay free for pushes; 0 -> pool_size - 1, at least 1.
    sync_max_offices: int = 0
    sync_queue_size: int = 0  # requests waiting for one of those offices; 0 -> 2 x effective_sync_max_offices
    sync_timeout_s: float = 30.0  # one request, upload to answer (Gotenberg's --api-timeout default)
    sync_callers: tuple[str, ...] = ()  # identities allowed besides PUSH_SERVICE_ACCOUNT (platform, oidc)

    @property
    def effective_sync_max_offices(self) -> int:
        return self.sync_max_offices or max(1, self.office.pool_size - 1)

    @property
    def effective_sync_queue_size(self) -> int:
        return self.sync_queue_size or 2 * self.effective_sync_max_offices

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        r = _Reader(env)
        office = _office_from(r)
        auth_mode = r.choice("AUTH_MODE", ("off", "platform", "oidc"), "platform")
        cfg = cls(
            output_bucket=r.required("OUTPUT_BUCKET"),
            office=office,
            output_prefix=r.get("OUTPUT_PREFIX", str, "").strip("/"),
            input_buckets=r.get("INPUT_BUCKETS", _csv, ()),
            input_suffixes=_suffixes(r.get("INPUT_SUFFIXES", _csv, ())) or DEFAULT_SUFFIXES,
            max_input_bytes=r.get("MAX_INPUT_BYTES", _positive_int, 100 * 2**20),
            auth_mode=auth_mode,
            auth_audience=r.get("AUTH_AUDIENCE", str, "") or None,
            push_service_account=r.get("PUSH_SERVICE_ACCOUNT", str, "") or None,
            auth_certs_url=r.get("AUTH_CERTS_URL", str, "https://www.googleapis.com/oauth2/v1/certs"),
            port=r.get("PORT", _port, 8080),
            metrics_port=r.get("METRICS_PORT", _port, None),
            shutdown_grace_s=r.get("SHUTDOWN_GRACE_S", _positive_float, 8.0),
            max_delivery_attempts=r.get("MAX_DELIVERY_ATTEMPTS", _positive_int, 5),
            google_cloud_project=r.get("GOOGLE_CLOUD_PROJECT", str, "") or None,
            log_format=r.choice("LOG_FORMAT", ("json", "text"), "json"),
            max_body_bytes=r.get("MAX_BODY_BYTES", _positive_int, 16 * 2**20),
            pdf_defaults=r.checked(options.from_env, env, options.DEFAULT),
            secrets_dir=r.checked(_secrets_dir, env, None),
            sync_max_offices=r.get("SYNC_MAX_OFFICES", _positive_int, 0),
            sync_queue_size=r.get("SYNC_QUEUE_SIZE", _positive_int, 0),
            sync_timeout_s=r.get("SYNC_TIMEOUT_S", _positive_float, 30.0),
            sync_callers=r.get("SYNC_CALLERS", _csv, ()),
        )
        if cfg.sync_max_offices > office.pool_size:
            r.problems.append(f"SYNC_MAX_OFFICES={cfg.sync_max_offices} is more than POOL_SIZE={office.pool_size}")
        if auth_mode in ("platform", "oidc") and not cfg.push_service_account:
            r.problems.append(f"PUSH_SERVICE_ACCOUNT is required when AUTH_MODE={auth_mode}")
        if auth_mode == "oidc" and not cfg.auth_audience:
            r.problems.append("AUTH_AUDIENCE is required when AUTH_MODE=oidc")
        if not r.problems:
            r.problems.extend(_default_secret_problems(cfg.pdf_defaults, cfg.secrets_dir))
        r.raise_if_any()
        return cfg


def office_from_env(env: Mapping[str, str] | None = None) -> OfficeSettings:
    """The office part alone, for `worker convert` which needs no bucket."""
    r = _Reader(os.environ if env is None else env)
    office = _office_from(r)
    r.raise_if_any()
    return office


def _office_from(r: _Reader) -> OfficeSettings:
    defaults = OfficeSettings()
    template = r.get("OFFICE_PROFILE_TEMPLATE", str, "")
    uno_dir = r.get("OFFICE_UNO_DIR", str, "")
    work_dir = r.get("WORK_DIR", str, "")
    return OfficeSettings(
        pool_size=r.get("POOL_SIZE", _positive_int, defaults.pool_size),
        conversion_timeout_s=r.get("CONVERSION_TIMEOUT_S", _positive_float, defaults.conversion_timeout_s),
        max_conversions=r.get("MAX_CONVERSIONS_PER_INSTANCE", _positive_int, defaults.max_conversions),
        max_rss_mb=r.get("MAX_OFFICE_RSS_MB", _positive_int, defaults.max_rss_mb),
        rss_kill_mb=r.get("OFFICE_RSS_KILL_MB", _positive_int, 0),
        queue_size=r.get("QUEUE_SIZE", _positive_int, 0),
        queue_wait_s=r.get("QUEUE_WAIT_S", _positive_float, 0.0),
        start_timeout_s=r.get("OFFICE_START_TIMEOUT_S", _positive_float, defaults.start_timeout_s),
        update_indexes=r.get("UPDATE_INDEXES", _bool, False),
        soffice=r.get("SOFFICE_BIN", str, defaults.soffice),
        uno_python=r.get("UNO_PYTHON", str, defaults.uno_python),
        uno_dir=Path(uno_dir) if uno_dir else defaults.uno_dir,
        profile_template=Path(template) if template else None,
        work_dir=Path(work_dir) if work_dir else defaults.work_dir,
        sandbox=r.choice("OFFICE_SANDBOX", ("auto", "bwrap", "off"), defaults.sandbox),
    )


class _Reader:
    """Collects every problem instead of stopping at the first, so one start shows all bad settings."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def required(self, name: str) -> str:
        value = self.env.get(name, "").strip()
        if not value:
            self.problems.append(f"{name} is required")
        return value

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.append(f"{name}={raw!r}: {exc}")
            return default

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        raw = self.env.get(name, "").strip().lower() or default
        if raw not in allowed:
            self.problems.append(f"{name}={raw!r}: must be one of {', '.join(allowed)}")
            return default
        return raw

    def checked(self, read: Callable[[Mapping[str, str]], T], env: Mapping[str, str], default: T) -> T:
        """A reader that validates a whole group itself (worker/options.py); its problems join the others."""
        try:
            return read(env)
        except WorkerError as exc:
            self.problems.append(exc.message.removeprefix("invalid configuration: "))
            return default

    def raise_if_any(self) -> None:
        if self.problems:
            raise WorkerError(Reason.BAD_CONFIG, "invalid configuration: " + "; ".join(self.problems))


def _secrets_dir(env: Mapping[str, str]) -> Path | None:
    secrets = options.secrets_from_env(env)
    return None if secrets is None else secrets.directory


def _default_secret_problems(defaults: options.PdfOptions, secrets_dir: Path | None) -> list[str]:
    """Defaults that would refuse every upload (a secret not mounted, permissions without an owner password)."""
    try:
        options.resolve_passwords(defaults, None if secrets_dir is None else options.MountedSecrets(secrets_dir))
    except options.BadOptions as exc:
        return [f"{options.ENV_PREFIX}{key.removeprefix(options.PREFIX).upper().replace('-', '_')}: {why}"
                for key, why in sorted(exc.problems.items())]
    except OSError as exc:
        return [f"PDF_* defaults: a secret under {secrets_dir} cannot be read: {exc}"]
    return []


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _suffixes(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.lower() if v.startswith(".") else "." + v.lower() for v in values)


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port (1-65535)")
    return value


def _bool(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")
