"""Where the shared real-world corpora live: one setting read by every test, the stress harness and bench/parity.py.

The corpora are not in the repository (licences, size). A checkout finds them at `DOCWORKER_CORPUS_DIR`, by default
the `shared` directory beside the checkout. A test that needs one calls `need_corpus`: without the corpus it is
skipped with a reason that the terminal summary repeats loudly; with `DOCWORKER_REQUIRE_CORPUS=1` (CI) it fails.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS_DIR_ENV = "DOCWORKER_CORPUS_DIR"
REQUIRE_ENV = "DOCWORKER_REQUIRE_CORPUS"
MISSING = "corpus missing"  # the start of every skip reason this module gives; tests/conftest.py counts them


def corpus_root(env: Mapping[str, str] | None = None) -> Path:
    """DOCWORKER_CORPUS_DIR if set (relative to the current directory), else `shared` beside the checkout."""
    env = os.environ if env is None else env
    value = env.get(CORPUS_DIR_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else REPO.parent / "shared"


def corpus_required(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get(REQUIRE_ENV, "").strip() not in ("", "0")


ROOT = corpus_root()
CORPUS = ROOT / "corpus"  # 258 documents from public test suites, MANIFEST.tsv
FORMATS = ROOT / "corpus-formats"  # 32 legacy and non-Microsoft documents, MANIFEST.tsv


def missing_reason(corpus: Path) -> str | None:
    """Why `corpus` cannot be used (no MANIFEST.tsv), or None when it can."""
    if (corpus / "MANIFEST.tsv").is_file():
        return None
    return (f"{MISSING}: {corpus}/MANIFEST.tsv not found; set {CORPUS_DIR_ENV} to the directory holding "
            f"corpus/ and corpus-formats/")


def need_corpus(corpus: Path = CORPUS) -> Path:
    """Call at the start of a test that reads a corpus: skip loudly without it, fail when CI requires it."""
    import pytest  # here, so bench/parity.py can use this module without pytest installed

    reason = missing_reason(corpus)
    if reason is None:
        return corpus
    if corpus_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)
