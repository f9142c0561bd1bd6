"""The CLI's one error boundary: what a failure looks like to the user.

- A **user error** (bad option, file, field or value) is one line on stderr, `error: <what> ...`, and exit
  code 2. It names the file, field or value and, where it can, what would be accepted. No traceback.
- An **internal error** (a bug in lamina or a library under it) is visibly different: exit code 1, a short
  `internal error (this is a bug): ...` line, then the traceback to report.
- `lamina --debug <command>` or `LAMINA_DEBUG=1` prints the traceback of user errors too.

Which exceptions are user errors is decided here, in one place (`describe`): lamina's own `LaminaError`
family (raised wherever a check fails, with the message already written for the user), plus the few
library exception types that can only come from what the user gave (a path that is not there, a design
value pydantic rejects, a file that is not UTF-8 text). Everything else is treated as a bug.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
import warnings

import typer
from typer.core import TyperGroup

from lamina.errors import LaminaError

USER_EXIT, BUG_EXIT = 2, 1
# OS errors that only a path or disk the user chose can cause: a name too long, a symlink loop, a read-only
# file system, a full disk or quota
PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
# click's exception base, whether typer vendors click (typer >= 0.2x) or uses the click package
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_state = {"debug": False}


def set_debug(flag: bool) -> None:
    _state["debug"] = bool(flag)


def debug() -> bool:
    return _state["debug"] or os.environ.get("LAMINA_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def one_line(text: str, limit: int = 600) -> str:
    """Collapse whitespace and newlines (a multi-line library message would break the one-line contract)."""
    text = " ".join(str(text).split())
    text = re.sub(r"\s*\(?For further information visit https://errors\.pydantic\.dev/\S*?\)?(?=\s|$)", "", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pydantic(err) -> str:
    errors = err.errors()
    first = errors[0] if errors else {"loc": (), "msg": str(err), "input": None}
    loc = ".".join(str(p) for p in first.get("loc", ()))
    msg = str(first.get("msg", "")).removeprefix("Value error, ")
    got = first.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    title = getattr(err, "title", "") or "value"
    return f"invalid {title.lower()}: {loc + ': ' if loc else ''}{msg}{shown}{more}"


def describe(err: BaseException) -> str | None:
    """The one-line message of a user error, or None when `err` is an internal error (a bug)."""
    from pydantic import ValidationError

    if isinstance(err, LaminaError):
        return one_line(str(err))
    if isinstance(err, ValidationError):
        return one_line(_pydantic(err))
    if isinstance(err, (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)) \
            or isinstance(err, OSError) and err.errno in PATH_ERRNOS:  # the path or disk the user named, not a bug
        name = str(getattr(err, "filename", None) or "")
        where = f": {name if len(name) <= 160 else name[:80] + '...' + name[-60:]}" if name else ""
        return one_line(f"{err.strerror or type(err).__name__}{where}")
    if isinstance(err, UnicodeDecodeError):
        return one_line(f"an input file is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8")
    return None


def report(err: BaseException) -> int:
    """Print `err` the way the boundary does and return the exit code."""
    message = describe(err)
    if message is None:
        typer.echo(f"internal error (this is a bug): {type(err).__name__}: {one_line(str(err), 300)}", err=True)
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
        return BUG_EXIT
    if debug():
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    typer.echo(f"error: {message}", err=True)
    return USER_EXIT


def _quiet_libraries() -> None:
    """transformers' warnings (config notes, loading reports) and huggingface_hub's (one line per retry of an
    unreachable Hub) would add lines to the one-line contract; only their errors show, unless the user set
    TRANSFORMERS_VERBOSITY / HF_HUB_VERBOSITY."""
    if "TRANSFORMERS_VERBOSITY" not in os.environ:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    if "HF_HUB_VERBOSITY" not in os.environ:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()


def guarded(fn, *args, **kwargs):
    """Run a command body behind the boundary: exit 2 for user errors, 1 for bugs. Python warnings raised on
    the way are held back and shown when the command ends, except after a user error (where only --debug shows
    them): a library's warning about the bad input would otherwise turn the one error line into several."""
    _quiet_libraries()
    held: list = []
    try:
        with warnings.catch_warnings(record=True) as held:
            warnings.simplefilter("default")
            try:
                return fn(*args, **kwargs)
            except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
                raise
            except ClickException:
                raise  # usage errors: LaminaGroup prints them
            except Exception as err:  # noqa: BLE001 - this is the boundary
                failure = err
        if describe(failure) is not None and not debug():
            held = []  # a user error: its one line only
        _show(held)
        held = []
        raise typer.Exit(report(failure)) from None
    finally:
        _show(held)


def _show(held: list) -> None:
    for w in held:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _usage_line(err) -> str:
    message = one_line(err.format_message())
    ctx = getattr(err, "ctx", None)
    if isinstance(err, UsageError) and ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


# options whose value names a file, folder, model or database: '' would mean the current folder (or nothing)
PATH_OPTIONS = ("-o", "--output", "-i", "--input", "--model", "--adapter", "--base", "--data-dir", "--design",
                "--train-file", "--dev-file", "--space", "--storage")


def _empty_path_option(args) -> str | None:
    """The first path option given '' (`-o ""`, `--output=`), as typed."""
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if eq and name in PATH_OPTIONS and not value.strip():
            return name
        if arg in PATH_OPTIONS and i + 1 < len(args) and not args[i + 1].strip():
            return arg
    return None


class LaminaGroup(TyperGroup):
    """The root command group: click's usage errors (a missing option, a value of the wrong type, an unknown
    command) print as one line too, instead of click's usage block or rich's panel."""

    def make_context(self, info_name, args, parent=None, **extra):
        empty = _empty_path_option(args)
        if empty:
            typer.echo(f"error: {empty} was given an empty value (an unset shell variable?); name a file, folder "
                       "or model", err=True)
            raise typer.Exit(USER_EXIT)
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except ClickException as err:
            if type(err).__name__ == "NoArgsIsHelpError":
                raise  # `lamina` alone: the help text
            typer.echo(f"error: {_usage_line(err)}", err=True)
            raise typer.Exit(USER_EXIT) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ClickException as err:
            if type(err).__name__ == "NoArgsIsHelpError":
                raise  # `lamina` alone: the help text
            typer.echo(f"error: {_usage_line(err)}", err=True)
            raise typer.Exit(USER_EXIT) from None
