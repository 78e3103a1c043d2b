"""docs/install.md names every optional extra of pyproject.toml (an extra nobody documents is not found)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[2]


def test_install_page_lists_every_extra() -> None:
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    page = (REPO / "docs" / "install.md").read_text()
    listed = set(re.findall(r"^\| `([\w-]+)` \|", page, re.MULTILINE))
    assert extras, "pyproject.toml declares no optional extra: is the test reading the right file?"
    assert listed == extras, (
        f"docs/install.md's table of extras lists {sorted(listed)}, pyproject.toml has {sorted(extras)}"
    )
