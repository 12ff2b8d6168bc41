"""`worker convert` as a user runs it: a PDF and exit 0, or exit 2 and one line naming why, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import corpora
from tests.harness.processes import office_pids_under
from tests.integration.conftest_office import (
    BAD_INPUT_REASONS,
    DATA,
    REPO,
    initialised_template,
    make_bad_inputs,
    pdf_text,
)

pytestmark = pytest.mark.office


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same session-wide initialised profile as test_office uses (built once per process)."""
    return initialised_template(tmp_path_factory.getbasetemp() / "office-template")


def run_cli(args: list[str], work_dir: Path, template: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WORK_DIR=str(work_dir), OFFICE_PROFILE_TEMPLATE=str(template), POOL_SIZE="1")
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "worker", "convert", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def test_convert_writes_a_pdf_and_exits_0(tmp_path: Path, template: Path) -> None:
    out = tmp_path / "out.pdf"
    result = run_cli([str(DATA / "sample.docx"), "-o", str(out)], tmp_path / "work", template)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    pages, text = pdf_text(out)
    assert pages >= 1 and "docworker sample docx" in text
    assert office_pids_under(tmp_path / "work") == []
    assert not list((tmp_path / "work").glob("job-*"))


@pytest.mark.parametrize("label", sorted(BAD_INPUT_REASONS))
def test_bad_input_exits_2_with_one_line_naming_the_reason(tmp_path: Path, template: Path, label: str) -> None:
    src = make_bad_inputs(tmp_path)[label]
    out = tmp_path / "out.pdf"
    # An office that cannot start: the refusal must come from looking at the file, before any office is launched.
    result = run_cli([str(src), "-o", str(out)], tmp_path / "work", template, SOFFICE_BIN=str(tmp_path / "none"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f": {BAD_INPUT_REASONS[label].value}: " in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize("initialised", [True, False], ids=["template", "no-template"])
def test_an_office_that_cannot_start_exits_1_with_one_line(tmp_path: Path, template: Path, initialised: bool) -> None:
    """A missing LibreOffice is reported as office_unavailable, not retried forever or shown as a traceback."""
    out = tmp_path / "out.pdf"
    env = {"SOFFICE_BIN": str(tmp_path / "no-soffice"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    if not initialised:
        env["OFFICE_PROFILE_TEMPLATE"] = str(REPO / "uno" / "profile")  # needs the first start, which fails
    result = run_cli([str(DATA / "sample.docx"), "-o", str(out)], tmp_path / "work", template, **env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("worker: office_unavailable: "), result.stderr
    assert "no-soffice" in lines[0] or "office.log" in lines[0]
    assert not out.exists()
    assert office_pids_under(tmp_path / "work") == []
    assert list((tmp_path / "cache" / "docworker").glob("*")) == [], "a half-built profile was left"


def test_bad_input_reasons_are_distinct_on_the_command_line(tmp_path: Path, template: Path) -> None:
    reasons = set()
    for src in make_bad_inputs(tmp_path).values():
        result = run_cli([str(src)], tmp_path / "work", template)
        assert result.returncode == 2
        reasons.add(result.stderr.split(": ")[2])
    assert reasons == {reason.value for reason in BAD_INPUT_REASONS.values()}


@pytest.fixture()
def formats_corpus() -> Path:
    return corpora.need_corpus(corpora.FORMATS)


def test_legacy_formats_convert_on_the_command_line(tmp_path: Path, template: Path, formats_corpus: Path) -> None:
    """Word 6.0 (once loaded as "MS Word 97" and failed), Works and Lotus: one run, one PDF each, exit 0."""
    names = ["testWORD6.doc", "testWORKS.wps", "testLotus123.wk1"]
    (tmp_path / "out").mkdir()
    result = run_cli([str(formats_corpus / "tika" / n) for n in names] + ["-o", str(tmp_path / "out")],
                     tmp_path / "work", template)
    assert result.returncode == 0, result.stderr
    texts = {name: pdf_text(tmp_path / "out" / (Path(name).stem + ".pdf"))[1] for name in names}
    assert "The quick brown fox jumps over the lazy dog" in texts["testWORD6.doc"]
    assert "Microsoft Works" in texts["testWORKS.wps"]
    assert "OBSERV" in texts["testLotus123.wk1"]


def test_a_format_we_do_not_convert_is_named_on_the_command_line(
    tmp_path: Path, template: Path, formats_corpus: Path
) -> None:
    out = tmp_path / "out.pdf"
    src = formats_corpus / "tika" / "testHWP-v5b.hwp"
    result = run_cli([str(src), "-o", str(out)], tmp_path / "work", template, SOFFICE_BIN=str(tmp_path / "none"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert ": unsupported_type: the file is a Hangul Word Processor (HWP 5) document" in result.stderr
    assert "upload again" in result.stderr and not out.exists()


# -- per-document options: --option KEY=VALUE, secrets from a real SECRETS_DIR ------------------------------------

CORPUS_PASSWORD = "Password1234_"  # MANIFEST.tsv: msoffcrypto-tool/example_password.docx


def test_options_and_a_mounted_secret_open_an_encrypted_input_as_pdfa(tmp_path: Path, template: Path) -> None:
    import pikepdf

    src = corpora.need_corpus(corpora.CORPUS) / "msoffcrypto-tool" / "example_password.docx"
    secrets = tmp_path / "secrets"
    (secrets / "doc-pw").mkdir(parents=True)
    (secrets / "doc-pw" / "value").write_text(CORPUS_PASSWORD + "\n")
    out = tmp_path / "out.pdf"
    result = run_cli([str(src), "-o", str(out), "--option", "pdfa=2b", "--option", "password-secret=doc-pw"],
                     tmp_path / "work", template, SECRETS_DIR=str(secrets))
    assert result.returncode == 0, result.stderr
    with pikepdf.open(out) as pdf:
        meta = pdf.open_metadata()
        assert (meta.get("pdfaid:part"), meta.get("pdfaid:conformance")) == ("2", "B")
    assert CORPUS_PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(("args", "secret", "reason"), [
    (["--option", "pdfa=4a", "--option", "colour=red"], None, "bad_option"),
    (["--option", "password-secret=doc-pw"], "not the password", "password_wrong"),
    ([], None, "password_required"),
])
def test_bad_options_and_passwords_exit_2_before_any_office(tmp_path: Path, template: Path, args: list[str],
                                                             secret: str | None, reason: str) -> None:
    src = corpora.need_corpus(corpora.CORPUS) / "msoffcrypto-tool" / "example_password.docx"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    if secret is not None:
        (secrets / "doc-pw").write_text(secret)
    result = run_cli([str(src), "-o", str(tmp_path / "out.pdf"), *args], tmp_path / "work", template,
                     SECRETS_DIR=str(secrets), SOFFICE_BIN=str(tmp_path / "none"))
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert f": {reason}: " in line and "Traceback" not in result.stderr
