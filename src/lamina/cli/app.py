"""The Typer app and the `@command()` decorator every command module registers with.

Command modules import only light things at their top (typer, lamina.errors); torch, transformers and
the rest are imported inside the commands that need them, so `lamina --help` starts in a fraction of
a second.
"""

from __future__ import annotations

import functools

import typer

from lamina.errors import LaminaError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False, help="Layer-wise, budget-aware PEFT for Hugging Face models.")


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
