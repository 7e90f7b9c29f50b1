"""Per-user state outside any project: crash logs, the audit key and audit checkpoints.

What lives here must survive a project folder being copied, restored or tampered
with, so it is never under the project. ``TAGSMITH_LOG_DIR`` and
``TAGSMITH_CONFIG_DIR`` move the folders, ``TAGSMITH_AUDIT_KEY_FILE`` the key (a key
shared by every user and service process writing one project's log); the defaults
follow the XDG base-directory convention.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

__all__ = ["audit_checkpoint_path", "audit_key", "audit_key_path", "config_dir", "log_dir"]


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


def audit_key_path() -> Path:
    """``$TAGSMITH_AUDIT_KEY_FILE``, else ``config_dir()/audit.key``."""
    explicit = os.environ.get("TAGSMITH_AUDIT_KEY_FILE")
    return Path(explicit).expanduser() if explicit else config_dir() / "audit.key"


def audit_key() -> bytes:
    """The secret of the audit chain, created (32 random bytes, mode 0600) on first use."""
    path = audit_key_path()
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    try:
        os.link(tmp, path)  # never replaces a key another process created meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


def audit_checkpoint_path(log_path: Path) -> Path:
    """Where the checkpoint of the audit log at ``log_path`` is kept (one per log)."""
    digest = hashlib.sha256(str(Path(log_path).resolve()).encode("utf-8")).hexdigest()[:20]
    return config_dir() / "audit-checkpoints" / f"{digest}.json"
