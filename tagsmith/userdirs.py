"""Per-user folders outside any project: crash logs and the audit-chain keys.

What lives here must survive a project folder being copied, restored or tampered
with, so it is never under the project. ``TAGSMITH_LOG_DIR`` and
``TAGSMITH_CONFIG_DIR`` move them (tests, shared machines); the defaults follow the
XDG base-directory convention.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["config_dir", "log_dir"]


def log_dir() -> Path:
    """``$TAGSMITH_LOG_DIR``, else ``$XDG_STATE_HOME/tagsmith/logs`` (~/.local/state)."""
    explicit = os.environ.get("TAGSMITH_LOG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "tagsmith" / "logs"


def config_dir() -> Path:
    """``$TAGSMITH_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/tagsmith`` (~/.config/tagsmith)."""
    explicit = os.environ.get("TAGSMITH_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "tagsmith"
