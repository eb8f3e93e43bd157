"""The ``sparsert`` command: convert, inspect, run, bench and demo (one module per command).

    sparsert convert model.onnx -o model.spr [--input-shape x=1,3,224,224] [--prune magnitude:0.9]
    sparsert inspect model.spr [--json]
    sparsert run model.spr --input x.npy [--output y.npy]
    sparsert bench model.spr --vs model.onnx --threads 2
    sparsert demo [--quick] [--out DIR]

Errors are one line on stderr: exit status 2 for a bad command line, 1 when the work fails
(missing file, broken model, unsupported op...). ``--verbose`` adds the traceback.
The commands only call the public Python API (``sparsert.load``, ``sparsert.convert``, ...).
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from sparsert._util import printable
from sparsert.cli import bench, convert, demo, inspect, run
from sparsert.cli._common import PROG, UsageError

__all__ = ["main", "build_parser", "UsageError"]

COMMANDS = (convert, inspect, run, bench, demo)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: error: ... (see prog --help)``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    # --verbose is accepted before and after the subcommand; SUPPRESS keeps the subparser from
    # resetting a value the main parser already set.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    from sparsert import __version__

    parser = _Parser(
        prog=PROG,
        description="sparsert: run pruned neural networks fast on CPUs (.spr models).",
        epilog="Run 'sparsert COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"sparsert {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", default=False, help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for command in COMMANDS:
        command.register(sub, common)
    return parser


def _one_line(e: BaseException) -> str:
    """The error as one line (control characters escaped); the exception type is named unless
    it adds nothing."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return printable(f"{e.strerror}: {e.filename!r}")
    text = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip()) or repr(e)
    if type(e) in (ValueError, RuntimeError, OSError, FileNotFoundError, IsADirectoryError, UsageError):
        return printable(text)
    return printable(f"{type(e).__name__}: {text}")


def _show_warning_line(command: str) -> Any:
    """A ``warnings.showwarning`` that prints one line: ``sparsert convert: warning: ...``."""

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        text = " ".join(str(message).split())
        print(f"{PROG} {command}: warning: {printable(text)}", file=file or sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    saved_showwarning = warnings.showwarning
    if not verbose:
        warnings.showwarning = _show_warning_line(args.command)
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        if verbose:
            traceback.print_exc()
        sub = f"{PROG} {args.command}"
        print(f"{sub}: error: {_one_line(e)} (see '{sub} --help')", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # noqa: BLE001 - every failure becomes one line (traceback with --verbose)
        if verbose:
            traceback.print_exc()
        print(f"{PROG} {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = saved_showwarning


if __name__ == "__main__":
    sys.exit(main())
