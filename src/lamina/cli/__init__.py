"""`lamina` command line: params, train, eval, predict, merge, export-peft, import-peft, search, report, suggest.

Each pipeline stage registers its commands from its own module. Every command runs behind one error
boundary (`lamina.cli.boundary`): a user error is one line on stderr and exit code 2, never a traceback
(`--debug` or LAMINA_DEBUG=1 adds it); an internal error (a bug) exits 1 with a "this is a bug" line and
the traceback.
"""

from __future__ import annotations

import sys

from lamina.cli.app import app, command  # noqa: F401  (the app, and the decorator commands use)

from lamina.cli import params  # noqa: F401  (registers commands)
from lamina.cli import train  # noqa: F401  (train, eval, predict, demo)
from lamina.cli import io  # noqa: F401  (registers merge, export-peft, import-peft)
from lamina.cli import search  # noqa: F401  (search, report)
from lamina.cli import suggest  # noqa: F401  (suggest)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
