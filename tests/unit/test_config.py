"""Settings are validated once at start and every problem is reported in one error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from worker.config import DEFAULT_SUFFIXES, Config, office_from_env
from worker.errors import Reason, WorkerError


def test_minimal_environment_gives_documented_defaults() -> None:
    cfg = Config.from_env({"OUTPUT_BUCKET": "out", "AUTH_MODE": "off"})
    assert cfg.output_bucket == "out"
    assert cfg.output_prefix == ""
    assert cfg.input_buckets == ()
    assert cfg.input_suffixes == DEFAULT_SUFFIXES
    assert cfg.max_input_bytes == 100 * 2**20
    assert cfg.port == 8080 and cfg.metrics_port is None
    assert cfg.shutdown_grace_s == 8.0
    assert cfg.office.conversion_timeout_s == 120.0
    assert cfg.office.effective_queue_size == 2 * cfg.office.pool_size


def test_every_bad_setting_is_reported_at_once() -> None:
    env = {"PORT": "99999", "POOL_SIZE": "0", "AUTH_MODE": "maybe", "CONVERSION_TIMEOUT_S": "soon",
           "UPDATE_INDEXES": "perhaps"}
    with pytest.raises(WorkerError) as info:
        Config.from_env(env)
    assert info.value.reason == Reason.BAD_CONFIG
    for name in ("OUTPUT_BUCKET", "PORT", "POOL_SIZE", "AUTH_MODE", "CONVERSION_TIMEOUT_S", "UPDATE_INDEXES"):
        assert name in info.value.message


def test_auth_modes_require_their_settings() -> None:
    with pytest.raises(WorkerError) as info:
        Config.from_env({"OUTPUT_BUCKET": "out", "AUTH_MODE": "oidc"})
    assert "PUSH_SERVICE_ACCOUNT" in info.value.message and "AUTH_AUDIENCE" in info.value.message
    with pytest.raises(WorkerError, match="PUSH_SERVICE_ACCOUNT"):
        Config.from_env({"OUTPUT_BUCKET": "out"})  # platform is the default and needs the push account
    cfg = Config.from_env({"OUTPUT_BUCKET": "out", "AUTH_MODE": "platform", "PUSH_SERVICE_ACCOUNT": "p@x.iam"})
    assert cfg.auth_mode == "platform"


def test_lists_are_normalised() -> None:
    cfg = Config.from_env({"OUTPUT_BUCKET": "out", "AUTH_MODE": "off", "INPUT_BUCKETS": " a, b ,,",
                           "INPUT_SUFFIXES": "DOCX, .Xlsx", "OUTPUT_PREFIX": "/pdf/"})
    assert cfg.input_buckets == ("a", "b")
    assert cfg.input_suffixes == (".docx", ".xlsx")
    assert cfg.output_prefix == "pdf"


def test_office_settings_alone_need_no_bucket() -> None:
    office = office_from_env({"POOL_SIZE": "3", "MAX_OFFICE_RSS_MB": "512", "QUEUE_SIZE": "7"})
    assert (office.pool_size, office.max_rss_mb, office.effective_queue_size) == (3, 512, 7)


def test_serve_with_bad_settings_exits_2_with_one_line_and_no_traceback() -> None:
    env = {"PATH": "/usr/bin:/bin", "PORT": "nope", "AUTH_MODE": "off"}
    proc = subprocess.run([sys.executable, "-m", "worker", "serve"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad_config" in lines[0] and "OUTPUT_BUCKET" in lines[0] and "PORT" in lines[0]
    assert "Traceback" not in proc.stderr


def test_default_suffixes_cover_every_format_we_convert() -> None:
    """A push is only looked at when its name is listed: every kind in the catalogue must be, or it is ignored."""
    from worker.formats import FORMATS

    # .xml is too general to watch by default (Word 2003 XML still converts through `worker convert`).
    extensions = {fmt.extension for fmt in FORMATS.values()} - {".xml"}
    assert extensions <= set(DEFAULT_SUFFIXES), sorted(extensions - set(DEFAULT_SUFFIXES))
    assert len(DEFAULT_SUFFIXES) == len(set(DEFAULT_SUFFIXES))
    assert all(s == s.lower() and s.startswith(".") for s in DEFAULT_SUFFIXES)
    assert {".xlsb", ".wps", ".wpd", ".wri", ".wk1", ".123", ".vsd", ".pub", ".pages", ".key", ".dif"} <= set(
        DEFAULT_SUFFIXES
    )
    assert ".hwp" in DEFAULT_SUFFIXES  # refused by name with advice, rather than ignored without a word


# -- per-document option defaults (PDF_*) and the secrets directory, validated with everything else ---------------


def test_pdf_defaults_and_secrets_dir_are_read_at_start(tmp_path: Path) -> None:
    from worker.options import PdfOptions

    (tmp_path / "reports-owner").write_text("owner secret\n")
    cfg = Config.from_env({"OUTPUT_BUCKET": "out", "AUTH_MODE": "off", "PDF_MAX_DPI": "150", "PDF_PRINT": "lowres",
                           "PDF_OWNER_PASSWORD_SECRET": "reports-owner", "SECRETS_DIR": str(tmp_path)})
    assert cfg.pdf_defaults == PdfOptions(max_dpi=150, printing="lowres", owner_password_secret="reports-owner")
    assert cfg.secrets_dir == tmp_path


def test_bad_pdf_defaults_are_reported_with_every_other_bad_setting() -> None:
    env = {"PORT": "99999", "PDF_PDFA": "4a", "PDF_COLOUR": "red", "PDF_QUALITY": "0", "SECRETS_DIR": "/nonexistent"}
    with pytest.raises(WorkerError) as info:
        Config.from_env(env)
    assert info.value.reason == Reason.BAD_CONFIG
    for name in ("OUTPUT_BUCKET", "PORT", "PDF_PDFA", "PDF_COLOUR", "PDF_QUALITY", "SECRETS_DIR"):
        assert name in info.value.message
    assert "1b, 2b or 3b" in info.value.message


@pytest.mark.parametrize(("env", "expected"), [
    ({"PDF_OPEN_PASSWORD_SECRET": "reports-open"}, "PDF_OPEN_PASSWORD_SECRET: no secrets are configured"),
    ({"PDF_OPEN_PASSWORD_SECRET": "reports-open", "SECRETS_DIR": "{dir}"}, "is not a secret this service has"),
    ({"PDF_PRINT": "none"}, "PDF_PRINT: permissions need an owner password"),
])
def test_defaults_that_would_refuse_every_upload_stop_the_start(tmp_path: Path, env: dict[str, str],
                                                                expected: str) -> None:
    env = {k: v.format(dir=tmp_path) for k, v in env.items()}
    with pytest.raises(WorkerError) as info:
        Config.from_env({"OUTPUT_BUCKET": "out", "AUTH_MODE": "off", **env})
    assert expected in info.value.message
