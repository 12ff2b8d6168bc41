"""The corpus location setting: one env var, a default beside the checkout, skip loudly or fail when CI requires it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import corpora
from tests.corpora import CORPUS_DIR_ENV, MISSING, REPO, REQUIRE_ENV, corpus_required, corpus_root, need_corpus

pytest_plugins = ["pytester"]


def test_default_is_shared_beside_the_checkout() -> None:
    assert corpus_root({}) == REPO.parent / "shared"
    assert corpus_root({CORPUS_DIR_ENV: "  "}) == REPO.parent / "shared"


def test_env_var_wins_and_relative_paths_are_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert corpus_root({CORPUS_DIR_ENV: str(tmp_path)}) == tmp_path
    monkeypatch.chdir(tmp_path)
    assert corpus_root({CORPUS_DIR_ENV: "elsewhere"}) == tmp_path / "elsewhere"


@pytest.mark.parametrize(("value", "required"), [("", False), ("0", False), ("1", True), ("yes", True)])
def test_require_flag(value: str, required: bool) -> None:
    assert corpus_required({REQUIRE_ENV: value}) is required
    assert corpus_required({}) is False


def test_missing_corpus_skips_with_the_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as caught:
        need_corpus(tmp_path / "corpus")
    assert str(caught.value).startswith(MISSING) and CORPUS_DIR_ENV in str(caught.value)


def test_missing_corpus_fails_when_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception) as caught:
        need_corpus(tmp_path / "corpus")
    assert REQUIRE_ENV in str(caught.value)


def test_present_corpus_is_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    (tmp_path / "MANIFEST.tsv").write_text("relative_path\n")
    assert need_corpus(tmp_path) == tmp_path


def test_terminal_summary_names_the_tests_that_did_not_run(pytester: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's own hook (tests/conftest.py) on a tiny suite whose corpus is missing."""
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    monkeypatch.setattr(corpora, "ROOT", pytester.path / "nowhere")
    pytester.makeconftest("from tests.conftest import pytest_terminal_summary  # noqa: F401\n")
    pytester.makepyfile(test_uses_corpus=f"""
        from pathlib import Path
        from tests.corpora import need_corpus

        def test_reads_corpus():
            need_corpus(Path({str(pytester.path / "nowhere" / "corpus")!r}))

        def test_plain():
            assert True
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*1 CORPUS TESTS DID NOT RUN*", "*not run: test_uses_corpus.py::test_reads_corpus*"])
