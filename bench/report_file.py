"""Shared by the small benchmark scripts: print a result and, when asked, write it as a Markdown page
headed by the exact command that made it (atomically, through lamina.util)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def publish(text: str, title: str, markdown: Path | None) -> None:
    print(text)
    if markdown is None:
        return
    sys.path.insert(0, str(ROOT / "src"))
    from lamina.util import atomic_write_text

    command = " ".join([".venv/bin/python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    atomic_write_text(markdown, f"# {title}\n\n`{command}`\n\n{text}")
