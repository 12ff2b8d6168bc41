"""The option table users read (README.md) is docs/options.md's, and both list exactly the options the parser knows."""

from __future__ import annotations

import re
from pathlib import Path

from worker.options import CATALOGUE, DEFAULT, PREFIX, from_metadata

REPO = Path(__file__).resolve().parents[2]
HEADER = "| Key (`docworker-` +) |"


def option_table(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    start = text.index(HEADER)
    return text[start:text.index("\n\n", start)].splitlines()


def test_the_readme_table_is_the_design_documents_table() -> None:
    assert option_table(REPO / "README.md") == option_table(REPO / "docs" / "options.md")


def test_the_table_lists_every_option_once_in_catalogue_order() -> None:
    rows = option_table(REPO / "README.md")[2:]
    keys = [re.match(r"\| `([a-z-]+)` \|", row).group(1) for row in rows]  # type: ignore[union-attr]
    assert keys == [option.key for option in CATALOGUE]


def test_every_example_in_the_readme_parses() -> None:
    """The copy-paste commands set options the parser accepts (secrets are only named there, never resolved)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    examples = re.findall(r"--custom-metadata='?(?:\^;\^)?([^' \n]+)'?", text)
    assert len(examples) >= 3
    for example in examples:
        separator = ";" if "pages=" in example else ","
        metadata = dict(pair.split("=", 1) for pair in example.split(separator))
        assert all(key.startswith(PREFIX) for key in metadata)
        assert from_metadata(metadata) != DEFAULT
