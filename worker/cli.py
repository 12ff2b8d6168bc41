"""The `worker` command: serve, convert, demo, warm-profile. Errors become one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from worker.config import office_from_env
from worker.errors import WorkerError

EXIT_OK = 0
EXIT_FAILED = 1  # transient: the office or a dependency failed; trying again may work
EXIT_REFUSED = 2  # permanent: the input will never convert (or bad usage/configuration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="start the office pool and serve the push endpoint on $PORT")
    conv = sub.add_parser("convert", help="convert local files to PDF through the same warm pool")
    conv.add_argument("inputs", nargs="+", type=Path)
    conv.add_argument("-o", "--output", type=Path,
                      help="output file (one input) or directory (several); default: beside each input")
    conv.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="a per-document PDF option, as the docworker-KEY metadata of an upload (docs/options.md):"
                           " --option pdfa=2b --option pages=1-3; repeatable. Defaults from PDF_*, secrets from "
                           "SECRETS_DIR")
    demo = sub.add_parser("demo", help="run the whole pipeline on local emulators")
    demo.add_argument("sample", nargs="?", type=Path, default=Path("tests/data/sample.docx"))
    demo.add_argument("--once", action="store_true", help="exit after the first PDF instead of waiting")
    warm = sub.add_parser("warm-profile", help="build an initialised hardened profile (image build step)")
    warm.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    try:
        if args.command == "convert":
            return _convert(args.inputs, args.output, args.option)
        if args.command == "warm-profile":
            return _warm_profile(args.out)
        if args.command == "demo":
            from worker.demo import run_demo

            return int(run_demo(args.sample, keep_running=not args.once))
        from worker.server import serve

        return int(serve())
    except WorkerError as exc:
        print(f"worker: {exc.reason.value}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED if exc.retryable else EXIT_REFUSED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or an environment problem: one line, never a traceback
        print(f"worker: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _convert(inputs: list[Path], output: Path | None, option_pairs: list[str]) -> int:
    from worker import options
    from worker.conversion import convert_file
    from worker.errors import Reason
    from worker.office import OfficePool
    from worker.sniff import Sniffed, sniff

    logging.basicConfig(level=logging.WARNING, format="worker: %(message)s")
    if output is not None and len(inputs) > 1 and not output.is_dir():
        print("worker: bad_request: with several inputs, -o must be an existing directory", file=sys.stderr)
        return EXIT_REFUSED
    missing = [p for p in inputs if not p.is_file()]
    if missing:
        print(f"worker: bad_request: no such file: {missing[0]}", file=sys.stderr)
        return EXIT_REFUSED
    settings = office_from_env()
    # The same parser, defaults and secrets as a push: --option k=v is the upload's docworker-k metadata.
    try:
        asked = options.from_metadata(options.metadata_from_pairs(option_pairs), options.from_env())
        passwords = options.resolve_passwords(asked, options.secrets_from_env())
    except options.BadOptions as exc:
        raise WorkerError(Reason.BAD_OPTION, str(exc)) from exc
    worst = EXIT_OK
    # Refuse what will never convert before paying for an office start.
    todo: list[tuple[Path, Sniffed]] = []
    for src in inputs:
        try:
            todo.append((src, sniff(src, src.name, password=passwords.input_password)))
        except WorkerError as exc:
            print(f"worker: {src}: {exc.reason.value}: {exc.message}", file=sys.stderr)
            worst = EXIT_REFUSED
    if not todo:
        return worst
    settings = replace(settings, pool_size=max(1, min(settings.pool_size, len(todo))))
    pool = OfficePool(settings)
    try:
        pool.start(give_up_on_failure=True)
        for src, sniffed in todo:
            if output is None:
                dst = src.with_suffix(".pdf")
            elif output.is_dir():
                dst = output / (src.stem + ".pdf")
            else:
                dst = output
            try:
                convert_file(pool, src, dst, src.name, settings.work_dir, sniffed, options=asked, passwords=passwords)
                print(f"{src} -> {dst}")
            except WorkerError as exc:
                print(f"worker: {src}: {exc.reason.value}: {exc.message}", file=sys.stderr)
                worst = max(worst, EXIT_FAILED if exc.retryable else EXIT_REFUSED)
    finally:
        pool.stop()
    return worst


def _warm_profile(out: Path) -> int:
    from worker.office.profile import build_template

    build_template(office_from_env(), out)
    print(f"initialised profile at {out}")
    return EXIT_OK
