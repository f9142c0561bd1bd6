"""The Typer app and the `@command()` decorator every command module registers with.

Command modules import only light things at their top (typer, lamina.errors); torch, transformers and
the rest are imported inside the commands that need them, so `lamina --help` starts in a fraction of
a second.
"""

from __future__ import annotations

import functools

import typer

from lamina.cli import boundary

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                  cls=boundary.LaminaGroup, help="Layer-wise, budget-aware PEFT for Hugging Face models.")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="show the traceback of user errors too (or LAMINA_DEBUG=1)"),
) -> None:
    """Layer-wise, budget-aware PEFT for Hugging Face models."""
    boundary.set_debug(debug)


def command(*args, **kwargs):
    """`@command()` = `@app.command()` behind the error boundary (`lamina.cli.boundary`): user errors are one
    line with exit code 2, internal errors exit 1 with the traceback."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*a, **kw):
            return boundary.guarded(fn, *a, **kw)

        return app.command(*args, **kwargs)(run)

    return wrap
