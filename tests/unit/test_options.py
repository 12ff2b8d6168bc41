"""worker/options.py: parsing from metadata and environment, every bad key reported, digest, FilterData, secrets."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

import pytest

from worker.errors import Reason, WorkerError
from worker.options import (
    BY_KEY,
    CATALOGUE,
    DEFAULT,
    ENV_KEYS,
    GOTENBERG_FIELDS,
    MAX_SECRET_BYTES,
    BadOptions,
    MountedSecrets,
    Passwords,
    PdfOptions,
    check_passwords,
    filter_json,
    from_env,
    from_metadata,
    gotenberg_to_metadata,
    metadata_from_pairs,
    resolve_passwords,
    secrets_from_env,
    to_load_properties,
)


def meta(**values: str) -> dict[str, str]:
    return {f"docworker-{k.replace('_', '-')}": v for k, v in values.items()}


# --- the catalogue -----------------------------------------------------------------------------------------


def test_every_field_has_exactly_one_documented_key() -> None:
    assert sorted(o.field for o in CATALOGUE) == sorted(f.name for f in fields(PdfOptions))
    assert len(BY_KEY) == len(CATALOGUE)
    assert all(o.accepted and o.libreoffice and o.verified for o in CATALOGUE)


def test_every_gotenberg_field_maps_to_a_catalogue_key() -> None:
    assert set(GOTENBERG_FIELDS.values()) <= set(BY_KEY)


# --- parsing -----------------------------------------------------------------------------------------------


def test_no_metadata_is_the_defaults() -> None:
    assert from_metadata(None) is DEFAULT
    assert from_metadata({}) is DEFAULT
    assert from_metadata({"owner": "alice", "goog-reserved-x": "1"}) is DEFAULT  # other metadata ignored


def test_parses_every_kind_of_value() -> None:
    options = from_metadata({
        **meta(pdfua="yes", pages=" 1-3, 5 ", single_page_sheets="on", notes="1", bookmarks="false",
               quality="55", max_dpi="150", lossless="true", form_fields="no", watermark="Entwürfe intern",
               update_indexes="true", print="lowres", changes="Forms", copy="false",
               owner_password_secret="pdf-owner", password_secret="input_pw"),
        "Content-Language": "en",
    })
    assert options == PdfOptions(
        pdfua=True, pages="1-3,5", single_page_sheets=True, notes=True, bookmarks=False, quality=55,
        max_dpi=150, lossless=True, form_fields=False, watermark="Entwürfe intern", update_indexes=True,
        printing="lowres", changes="forms", copying=False, owner_password_secret="pdf-owner",
        password_secret="input_pw")


def test_key_case_does_not_matter_and_errors_name_the_key_as_written() -> None:
    assert from_metadata({"DocWorker-PDFA": "3b"}).pdfa == "3b"
    with pytest.raises(BadOptions) as err:
        from_metadata({"DocWorker-PDFA": "4"})
    assert set(err.value.problems) == {"DocWorker-PDFA"}


def test_every_bad_key_is_reported_at_once_with_its_accepted_values() -> None:
    with pytest.raises(BadOptions) as err:
        from_metadata({**meta(pdfa="4a", quality="0", max_dpi="100", pages="3-1"), "docworker-colour": "red",
                       "unrelated": "x"})
    problems = err.value.problems
    assert set(problems) == {"docworker-pdfa", "docworker-quality", "docworker-max-dpi", "docworker-pages",
                             "docworker-colour"}
    assert "1b, 2b or 3b" in problems["docworker-pdfa"] and "'4a'" in problems["docworker-pdfa"]
    assert "1-100" in problems["docworker-quality"]
    assert "75, 150, 300, 600, 1200" in problems["docworker-max-dpi"]
    assert "unknown option" in problems["docworker-colour"] and "docworker-watermark" in problems["docworker-colour"]
    assert isinstance(err.value, ValueError) and "docworker-pdfa" in str(err.value)


@pytest.mark.parametrize(("key", "good", "bad"), [
    ("pdfa", ["1b", "2b", "3B"], ["", "1a", "2u", "4b", "pdf/a-2b"]),
    ("pdfua", ["true", "false", "YES", "0"], ["", "maybe", "2"]),
    ("pages", ["1", "2-4", "1-3,5", "100000"], ["", "0", "3-1", "1-", "-2", "a", "1--2", "100001", "1,,2",
                                                 ",".join(["1"] * 65)]),
    ("quality", ["1", "90", "100"], ["0", "101", "9.5", "high"]),
    ("max-dpi", ["75", "150", "300", "600", "1200"], ["72", "0", "2400", "300dpi"]),
    ("watermark", ["DRAFT", "x" * 200, "Entwurf für intern"], ["", "x" * 201, "two\nlines", "tab\there"]),
    ("print", ["none", "lowres", "full"], ["high", "yes"]),
    ("changes", ["none", "assemble", "forms", "comments", "any"], ["all", "fill"]),
    ("notes-in-margin", ["false"], ["true"]),  # LibreOffice 7.4 has no ExportNotesInMargin
    ("open-password-secret", ["a", "pdf-open_2", "A" * 255], ["", "../etc/passwd", "a/b", "..", ".hidden", "a.b",
                                                              "-lead", "A" * 256, "sp ace"]),
])
def test_accepted_and_refused_values(key: str, good: list[str], bad: list[str]) -> None:
    for value in good:
        from_metadata({"docworker-" + key: value})
    for value in bad:
        with pytest.raises(BadOptions) as err:
            from_metadata({"docworker-" + key: value})
        assert list(err.value.problems) == ["docworker-" + key], value


def test_combinations_libreoffice_would_not_honour_are_refused() -> None:
    with pytest.raises(BadOptions) as err:
        from_metadata(meta(pdfa="2b", open_password_secret="pw"))
    assert "forbids encryption" in err.value.problems["docworker-pdfa"]
    restricted = from_metadata(meta(print="none", copy="false"))
    with pytest.raises(BadOptions) as err:
        check_passwords(restricted, Passwords(open_password="only-open"))
    assert set(err.value.problems) == {"docworker-print", "docworker-copy"}
    check_passwords(restricted, Passwords(owner_password="own"))
    with pytest.raises(BadOptions) as err:  # literal passwords (Gotenberg's form) are held to the same rule
        check_passwords(from_metadata(meta(pdfa="1b")), Passwords(open_password="x"))
    assert set(err.value.problems) == {"docworker-pdfa"}


def test_metadata_overrides_environment_defaults() -> None:
    defaults = from_env({"PDF_PDFA": "2b", "PDF_QUALITY": "70", "PATH": "/bin"})
    assert (defaults.pdfa, defaults.quality) == ("2b", 70)
    options = from_metadata(meta(pdfa="3b"), defaults)
    assert (options.pdfa, options.quality) == ("3b", 70)
    assert from_metadata(None, defaults) is defaults


def test_environment_problems_are_reported_together_as_bad_config() -> None:
    with pytest.raises(WorkerError) as err:
        from_env({"PDF_PDFA": "9z", "PDF_MAX_DPI": "42", "PDF_COLOUR": "red", "PDF_QUALITY": "80"})
    assert err.value.reason == Reason.BAD_CONFIG
    for name in ("PDF_PDFA", "PDF_MAX_DPI", "PDF_COLOUR"):
        assert name in err.value.message
    assert "PDF_QUALITY:" not in err.value.message
    assert "PDF_UPDATE_INDEXES" not in ENV_KEYS  # the service keeps one UPDATE_INDEXES setting
    assert from_env({}) == DEFAULT


def test_command_line_pairs_use_the_same_parser() -> None:
    assert from_metadata(metadata_from_pairs(["pdfa=2b", "docworker-pages=1-3,5", "watermark=a=b"])) == PdfOptions(
        pdfa="2b", pages="1-3,5", watermark="a=b")
    with pytest.raises(BadOptions) as err:
        metadata_from_pairs(["pdfa", "=x"])
    assert set(err.value.problems) == {"pdfa", "=x"}
    with pytest.raises(BadOptions):
        from_metadata(metadata_from_pairs(["colour=red"]))


@pytest.mark.parametrize(("metadata", "profile"), [
    ({}, "default"), (meta(pdfa="2b"), "pdfa-2b"), (meta(pdfa="1b", pdfua="true"), "pdfa-1b"),
    (meta(pdfua="true"), "pdfua"), (meta(open_password_secret="o"), "encrypted"),
    (meta(owner_password_secret="o", print="none"), "encrypted"), (meta(watermark="W"), "custom"),
    (meta(quality="90"), "default"),
])
def test_profile_is_a_bounded_metric_label(metadata: dict[str, str], profile: str) -> None:
    assert from_metadata(metadata).profile == profile


# --- digest and record -------------------------------------------------------------------------------------


def test_digest_is_stable_and_order_independent() -> None:
    a = from_metadata({"docworker-pdfa": "2B", "docworker-pages": "1-3, 5", "docworker-quality": "80"})
    b = from_metadata({"docworker-quality": "80", "DOCWORKER-PAGES": "1-3,5", "docworker-pdfa": "2b"})
    assert a == b and a.digest() == b.digest()
    # Pinned: the digest is part of the idempotency key, so it must never change silently between releases.
    assert a.digest() == "317d50b696d96dc3a5afabdb47fbd6bb"


def test_digest_differs_for_different_options_and_ignores_defaults_spelled_out() -> None:
    digests = {from_metadata(meta(**kv)).digest() for kv in (
        {}, {"pdfa": "2b"}, {"pdfa": "3b"}, {"pages": "1"}, {"watermark": "A"}, {"watermark": "B"},
        {"owner_password_secret": "x"}, {"owner_password_secret": "y"})}
    assert len(digests) == 8
    assert from_metadata(meta(quality="90", bookmarks="true")).digest() == DEFAULT.digest()


def test_to_metadata_round_trips() -> None:
    options = from_metadata(meta(pdfa="1b", pages="2,4-6", watermark="W", quality="10", max_dpi="600",
                                 update_indexes="false", password_secret="in"))
    assert from_metadata(options.to_metadata()) == options
    assert DEFAULT.to_metadata() == {}


# --- FilterData --------------------------------------------------------------------------------------------


def test_default_filter_data_is_complete_and_stock() -> None:
    data = DEFAULT.to_filter_data()
    assert data["SelectPdfVersion"] == 0 and data["ExportNotes"] is False and data["Quality"] == 90
    assert data["ExportBookmarks"] is True and data["ExportFormFields"] is True
    assert data["ReduceImageResolution"] is False and data["UseTaggedPDF"] is False
    assert not {"PageRange", "Watermark", "EncryptFile", "RestrictPermissions", "ExportNotesInMargin"} & set(data)


@pytest.mark.parametrize(("level", "version"), [("1b", 1), ("2b", 2), ("3b", 3)])
def test_pdfa_filter_data(level: str, version: int) -> None:
    data = from_metadata(meta(pdfa=level)).to_filter_data()
    assert (data["SelectPdfVersion"], data["UseTaggedPDF"], data["EmbedStandardFonts"]) == (version, True, True)


def test_option_filter_data() -> None:
    data = from_metadata(meta(pdfua="true", pages="2-4,7", single_page_sheets="true", notes="true",
                              bookmarks="false", quality="33", max_dpi="75", lossless="true", form_fields="false",
                              watermark="DRAFT")).to_filter_data()
    assert data["PDFUACompliance"] is True and data["UseTaggedPDF"] is True
    assert data["PageRange"] == "2-4,7" and data["SinglePageSheets"] is True and data["ExportNotes"] is True
    assert data["ExportBookmarks"] is False and data["Quality"] == 33
    assert (data["ReduceImageResolution"], data["MaxImageResolution"]) == (True, 75)
    assert data["UseLosslessCompression"] is True and data["ExportFormFields"] is False
    assert data["Watermark"] == "DRAFT"


def test_password_filter_data_only_from_resolved_passwords() -> None:
    options = from_metadata(meta(open_password_secret="o", owner_password_secret="w", print="none",
                                 changes="comments", copy="false"))
    assert "EncryptFile" not in options.to_filter_data()  # names alone never encrypt with an empty password
    data = options.to_filter_data(Passwords(open_password="op", owner_password="ow"))
    assert (data["EncryptFile"], data["DocumentOpenPassword"]) == (True, "op")
    assert (data["RestrictPermissions"], data["PermissionPassword"]) == (True, "ow")
    assert (data["Printing"], data["Changes"], data["EnableCopyingOfContent"]) == (0, 3, False)
    owner_only = options.to_filter_data(Passwords(owner_password="ow"))
    assert "EncryptFile" not in owner_only and owner_only["RestrictPermissions"] is True


def test_filter_json_is_libreoffice_command_line_syntax() -> None:
    doc = json.loads(filter_json({"SelectPdfVersion": 2, "ExportNotes": False, "PageRange": "1-3,5"}))
    assert doc == {"SelectPdfVersion": {"type": "long", "value": "2"},
                   "ExportNotes": {"type": "boolean", "value": "false"},
                   "PageRange": {"type": "string", "value": "1-3,5"}}


def test_passwords_never_show_in_repr_and_load_password() -> None:
    passwords = Passwords(open_password="s3cret", input_password="in-pw")
    assert "s3cret" not in repr(passwords) and "in-pw" not in repr(passwords)
    assert to_load_properties(passwords) == {"Password": "in-pw"}
    assert to_load_properties(Passwords()) == {}


# --- Gotenberg's form fields -------------------------------------------------------------------------------


def test_gotenberg_form_maps_onto_the_same_options() -> None:
    form = {"pdfa": "PDF/A-2b", "pdfua": "true", "nativePageRanges": "1-2", "reduceImageResolution": "true",
            "maxImageResolution": "150", "quality": "50", "allowPrinting": "false", "allowFillingForms": "false",
            "allowModifying": "false", "exportFormFields": "false"}
    options = from_metadata(gotenberg_to_metadata(form))
    assert (options.pdfa, options.pdfua, options.pages, options.max_dpi, options.quality) == ("2b", True, "1-2", 150,
                                                                                             50)
    assert (options.printing, options.changes, options.form_fields) == ("none", "comments", False)
    assert from_metadata(gotenberg_to_metadata({"maxImageResolution": "600"})).max_dpi is None  # reduce is off
    assert from_metadata(gotenberg_to_metadata({"reduceImageResolution": "true"})).max_dpi == 300


def test_gotenberg_fields_we_cannot_honour_are_named() -> None:
    with pytest.raises(BadOptions) as err:
        gotenberg_to_metadata({"landscape": "true", "pdfa": "PDF/A-1b", "skipEmptyPages": "true"})
    assert set(err.value.problems) == {"landscape", "skipEmptyPages"}
    with pytest.raises(BadOptions) as err:
        from_metadata(gotenberg_to_metadata({"quality": "0"}))
    assert "docworker-quality" in err.value.problems


# --- secrets: real files in a real directory ---------------------------------------------------------------


def test_mounted_secret_is_read_with_one_trailing_newline_removed(tmp_path: Path) -> None:
    (tmp_path / "pdf-open").write_text("open sesame\n")
    (tmp_path / "raw").write_bytes(b"  spaced \t")
    secrets = MountedSecrets(tmp_path)
    assert secrets.read("pdf-open") == "open sesame"
    assert secrets.read("raw") == "  spaced \t"


@pytest.mark.parametrize("name", ["../outside", "..", "sub/inner", "/etc/passwd", ".hidden", "a.b", "", "x" * 256])
def test_secret_names_cannot_leave_the_directory(tmp_path: Path, name: str) -> None:
    secrets_dir = tmp_path / "secrets"
    (secrets_dir / "sub").mkdir(parents=True)
    (secrets_dir / "sub" / "inner").write_text("no")
    (secrets_dir / ".hidden").write_text("no")
    (secrets_dir / "a.b").write_text("no")
    (tmp_path / "outside").write_text("never readable")
    with pytest.raises(BadOptions):
        MountedSecrets(secrets_dir).read(name)


def test_missing_empty_and_oversized_secrets_are_bad_options(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "huge").write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00pw")
    secrets = MountedSecrets(tmp_path)
    for name, why in (("absent", "not a secret"), ("empty", "empty"), ("huge", "larger"), ("binary", "UTF-8")):
        with pytest.raises(BadOptions) as err:
            secrets.read(name)
        assert why in str(err.value)
        assert "never readable" not in str(err.value)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_secret_is_read_once_per_version(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("first")
    clock = FakeClock()
    secrets = MountedSecrets(tmp_path, max_age_s=60, clock=clock)
    assert secrets.read("pw") == "first"
    stamp = path.stat().st_mtime_ns
    path.write_text("FIRST")  # same inode and size; put the old mtime back: the same version to a reader
    os.utime(path, ns=(stamp, stamp))
    clock.now += 59
    assert secrets.read("pw") == "first"  # served from the cache, the file was not read again
    clock.now += 2
    assert secrets.read("pw") == "FIRST"  # older than max_age_s: read again, whatever stat says
    replacement = tmp_path / "pw.new"
    replacement.write_text("second")
    replacement.replace(path)  # a new file, as a new secret version appears: read at once
    assert secrets.read("pw") == "second"


def test_a_secret_mounted_as_its_own_directory(tmp_path: Path) -> None:
    (tmp_path / "pdf-owner").mkdir()
    (tmp_path / "pdf-owner" / "value").write_text("owner-pw\n")
    (tmp_path / "no-value").mkdir()
    secrets = MountedSecrets(tmp_path)
    assert secrets.read("pdf-owner") == "owner-pw"
    with pytest.raises(BadOptions):
        secrets.read("no-value")


def test_resolve_passwords_names_each_unavailable_secret(tmp_path: Path) -> None:
    (tmp_path / "open").write_text("o-pw")
    options = from_metadata(meta(open_password_secret="open", owner_password_secret="gone",
                                 password_secret="input"))
    with pytest.raises(BadOptions) as err:
        resolve_passwords(options, MountedSecrets(tmp_path))
    assert set(err.value.problems) == {"docworker-owner-password-secret", "docworker-password-secret"}
    (tmp_path / "gone").write_text("w-pw")
    (tmp_path / "input").write_text("i-pw")
    assert resolve_passwords(options, MountedSecrets(tmp_path)) == Passwords("o-pw", "w-pw", "i-pw")
    with pytest.raises(BadOptions) as err:
        resolve_passwords(options, None)
    assert "no secrets are configured" in err.value.problems["docworker-open-password-secret"]
    assert resolve_passwords(DEFAULT, None) == Passwords()


def test_secrets_dir_setting(tmp_path: Path) -> None:
    assert secrets_from_env({}) is None
    source = secrets_from_env({"SECRETS_DIR": str(tmp_path)})
    assert isinstance(source, MountedSecrets) and source.directory == tmp_path
    with pytest.raises(WorkerError) as err:
        secrets_from_env({"SECRETS_DIR": str(tmp_path / "absent")})
    assert err.value.reason == Reason.BAD_CONFIG

