"""Keep a project's embedded MLflow store pointing into the project when it moves.

MLflow records absolute artifact URIs (``file:///old/place/...``) in its SQLite store: in
experiments, runs, logged models and model versions. A project that is copied, moved or
restored from a backup would go on reading from, and writing new runs into, the old
folder. :func:`relocate_artifacts` rewrites those URIs to the project's current artifact
folder; ``tagsmith.project.Project`` calls it before it hands out the tracking URI, so
every command and the service see locations inside the project they opened.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["URI_COLUMNS", "artifact_roots", "relocate_artifacts"]

# Every column of MLflow 3's SQLite schema that holds an artifact URI.
URI_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def artifact_roots(db_path: Path) -> set[str]:
    """The artifact folders (``file:`` URIs) the store's experiments were created under.

    A project creates each experiment at ``<artifacts dir>/<experiment name>``
    (``training.tracking.ensure_experiment``); other experiments are ignored.
    """
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT name, artifact_location FROM experiments").fetchall()
    roots = set()
    for name, location in rows:
        if not location or not location.startswith("file:"):
            continue
        parent, _, last = location.rstrip("/").rpartition("/")
        if unquote(last) == name:
            roots.add(parent)
    return roots


def relocate_artifacts(db_path: Path, artifacts_dir: Path) -> int:
    """Rewrite artifact URIs under another folder to ``artifacts_dir``; rows changed.

    Nothing happens when the store does not exist yet or already points at
    ``artifacts_dir`` (the usual case: one read-only query).
    """
    if not db_path.is_file():
        return 0
    new = artifacts_dir.resolve().as_uri()
    old_roots = {r for r in artifact_roots(db_path) if r != new and _is_local(r)}
    if not old_roots:
        return 0
    changed = 0
    with sqlite3.connect(db_path) as con:
        present = {
            (table, col[1])
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            for col in con.execute(f"PRAGMA table_info({table})")
        }
        for old in sorted(old_roots):
            for table, column in URI_COLUMNS:
                if (table, column) not in present:
                    continue
                # Only URIs at or under the old folder: "<old>" or "<old>/...".
                # Table and column names come from URI_COLUMNS, never from input.
                cur = con.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608
                    f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                    (new, len(old) + 1, old, len(old) + 1, old + "/"),
                )
                changed += cur.rowcount
    return changed


def _is_local(uri: str) -> bool:
    return urlparse(uri).scheme == "file"
