"""`lamina` command line: params, train, eval, predict, merge, export-peft, import-peft, search, report.

Each pipeline stage registers its commands from its own module; user errors become one line on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import sys

import typer

from lamina.errors import LaminaError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Layer-wise, budget-aware PEFT for Hugging Face models.")


@app.callback()
def _root() -> None:
    """Layer-wise, budget-aware PEFT for Hugging Face models."""


def command(*args, **kwargs):
    """`@command()` = `@app.command()` whose user errors print as one line with exit code 2."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*a, **kw):
            try:
                return fn(*a, **kw)
            except (LaminaError, FileNotFoundError, NotADirectoryError) as err:
                typer.echo(f"error: {err}", err=True)
                raise typer.Exit(2) from None

        return app.command(*args, **kwargs)(run)

    return wrap


from lamina.cli import params  # noqa: E402,F401  (registers commands)
from lamina.cli import train  # noqa: E402,F401  (train, eval, predict, demo)
from lamina.cli import io  # noqa: E402,F401  (registers merge, export-peft, import-peft)
from lamina.cli import search  # noqa: E402,F401  (search, report)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
