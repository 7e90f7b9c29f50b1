"""Tamper-evident audit log: append-only JSON lines in a keyed hash chain.

Each entry records who (actor, role) did what (action, tags, number of customers,
query) and when, plus ``prev``, the hash of the entry before it, and ``hash``, the
HMAC-SHA256 of its own canonical JSON under a secret key (plain sha256 when no key is
given). Editing a line breaks its hash; deleting one breaks the sequence and the next
line's ``prev``. A sidecar ``<log>.head`` file records the count and last hash, so
cutting lines off the end is caught too. Appends from several processes are
serialised by a file lock.

An unkeyed chain with its head beside it can be rewritten wholesale by anyone who can
write the folder (hostile finding 14-8: 18 entries dropped, re-hashed, head rewritten,
"intact"). So the project keeps the key outside the project folder, where a rewrite
cannot reach it, and a *checkpoint* (the count and last hash) beside the key: deleting
the log and its head, or cutting its end, no longer verifies as intact.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from features.crypto import EncryptionKeys
from features.errors import StoreError
from tags.errors import AuditError

__all__ = ["GENESIS", "AuditLog", "AuditReport", "default_actor"]

GENESIS = "0" * 64
_SEALED = "enc1:"
_LOCK_TIMEOUT_S = 30.0


def default_actor() -> str:
    """Who is acting: ``TAGSMITH_USER`` when set, else the login name."""
    user = os.environ.get("TAGSMITH_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def _canonical(entry: Mapping[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _digest(entry: Mapping[str, Any], key: bytes | None = None) -> str:
    body = _canonical({k: v for k, v in entry.items() if k != "hash"}).encode("utf-8")
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


@dataclass
class AuditReport:
    """Outcome of :meth:`AuditLog.verify`.

    Attributes:
        n_entries: Lines read.
        problems: ``(line number, what is wrong)``, 1-based; empty when intact.
    """

    n_entries: int
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the chain is intact."""
        return not self.problems


class AuditLog:
    """An append-only, hash-chained JSON-lines file.

    With encryption keys, each line is the entry sealed (AES-GCM, ``features.crypto``)
    and base64-encoded after ``enc1:``; the hash chain is over the plain entries, so
    ``verify`` checks both. Plain and sealed lines may follow each other (a log started
    before the project had a key).

    Args:
        path: The log file (created with its folder on the first append).
        keys: Encryption keys (None: plain JSON lines).
        key: Secret of the keyed chain (HMAC-SHA256); None: plain sha256, which only
            catches edits by someone who does not recompute the chain.
        checkpoint: A file outside the log's folder that every append updates with
            the count and last hash; :meth:`verify` holds the log to it.
    """

    def __init__(
        self,
        path: Path,
        *,
        keys: EncryptionKeys | None = None,
        key: bytes | None = None,
        checkpoint: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.keys = keys
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.key = key
        self.checkpoint_path = Path(checkpoint) if checkpoint is not None else None

    def lock(self) -> FileLock:
        """The lock every writer holds (backups hold it to copy a consistent log)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.lock_path), timeout=_LOCK_TIMEOUT_S)

    def append(
        self,
        *,
        action: str,
        actor: str | None = None,
        role: str | None = None,
        tags: Collection[str] = (),
        n_customers: int | None = None,
        query: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one entry and return it (with its ``seq``, ``prev`` and ``hash``).

        Args:
            action: What was done (``read``, ``export``, ``audience``, ``run``,
                ``catalogue``, ``promote``, ...).
            actor: Who (default: :func:`default_actor`).
            role: The role they acted under.
            tags: Tag ids involved.
            n_customers: Customers returned or affected.
            query: The query, expression or file involved.
            extra: Any other JSON-serialisable facts.

        Raises:
            AuditError: The log is locked for too long or cannot be written.
        """
        return self.append_many(
            [
                {
                    "action": action,
                    "actor": actor,
                    "role": role,
                    "tags": tags,
                    "n_customers": n_customers,
                    "query": query,
                    "extra": extra,
                }
            ]
        )[0]

    def append_many(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Append several entries under one lock and one ``fsync`` (busy writers use it).

        Each mapping takes :meth:`append`'s keyword arguments (``action`` required).

        Raises:
            AuditError: The log is locked for too long or cannot be written.
        """
        written: list[dict[str, Any]] = []
        if not entries:
            return written
        try:
            with self.lock():
                seq, prev = self._tail()
                self._check_not_shrunk(seq)
                lines = []
                for given in entries:
                    seq += 1
                    n_customers = given.get("n_customers")
                    entry: dict[str, Any] = {
                        "seq": seq,
                        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                        "actor": given.get("actor") or default_actor(),
                        "role": given.get("role"),
                        "action": given["action"],
                        "tags": sorted(given.get("tags") or ()),
                        "n_customers": None if n_customers is None else int(n_customers),
                        "query": given.get("query"),
                        "extra": dict(given.get("extra") or {}),
                        "prev": prev,
                    }
                    entry["hash"] = _digest(entry, self.key)
                    prev = entry["hash"]
                    lines.append(self._encode(_canonical(entry)) + "\n")
                    written.append(entry)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write("".join(lines))
                    fh.flush()
                    os.fsync(fh.fileno())
                self._write_head(seq, prev)
                self._write_checkpoint(seq, prev)
        except Timeout as exc:
            raise AuditError(
                f"Expected to lock the audit log {self.lock_path} within {_LOCK_TIMEOUT_S:.0f} s."
                " Got it held by another process all along."
            ) from exc
        except OSError as exc:
            raise AuditError(f"Cannot append to the audit log {self.path}: {exc}") from exc
        return written

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (lines that are not JSON raise :class:`AuditError`)."""
        out = []
        for n, line in enumerate(self._lines(), start=1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise AuditError(
                    f"Line {n} of {self.path} is not a JSON entry: run 'tagsmith audit verify'."
                ) from exc
        return out

    def verify(self) -> AuditReport:
        """Check every hash, sequence number and link; report each broken line by number."""
        decoded = self._decoded_lines()
        lines = [text for text, _ in decoded]
        report = AuditReport(n_entries=len(lines))
        prev_hash: str | None = GENESIS
        prev_seq = 0
        last: dict[str, Any] | None = None
        hashes: dict[int, str] = {}
        for n, (line, utf8) in enumerate(decoded, start=1):
            if not utf8:
                report.problems.append((n, "not UTF-8 text (edited or corrupted)"))
                prev_hash, prev_seq = None, prev_seq + 1
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError:
                report.problems.append((n, "not a JSON entry (edited or corrupted)"))
                prev_hash, prev_seq = None, prev_seq + 1
                continue
            seq = entry.get("seq")
            gap = isinstance(seq, int) and seq > prev_seq + 1
            if gap:
                assert isinstance(seq, int)
                first, stop = prev_seq + 1, seq - 1
                what = f"entry #{first}" if first == stop else f"entries #{first}-#{stop}"
                report.problems.append((n, f"{what} deleted just before this line"))
            elif seq != prev_seq + 1:
                report.problems.append(
                    (n, f"holds entry #{seq} where #{prev_seq + 1} belongs (reordered or edited)")
                )
            if isinstance(seq, int):
                hashes[seq] = str(entry.get("hash"))
            if entry.get("hash") != _digest(entry, self.key):
                report.problems.append((n, "content does not match its hash (edited)"))
            elif not gap and prev_hash is not None and entry.get("prev") != prev_hash:
                report.problems.append(
                    (n - 1, "was rewritten: the next line's link to it no longer matches")
                )
            prev_hash = str(entry.get("hash"))
            prev_seq = seq if isinstance(seq, int) else prev_seq + 1
            last = entry
        head = self._read_head()
        if head is not None:
            head_n, head_hash = head
            last_seq = int(last["seq"]) if last and isinstance(last.get("seq"), int) else 0
            if last_seq < head_n:
                first = last_seq + 1
                gone = f"#{first}" if first == head_n else f"#{first}-#{head_n}"
                report.problems.append(
                    (
                        len(lines) + 1,
                        f"log ends at entry #{last_seq}, expected #{head_n}: "
                        f"entries {gone} deleted from the end",
                    )
                )
            elif last_seq == head_n and last is not None and last.get("hash") != head_hash:
                report.problems.append(
                    (len(lines), "differs from the hash recorded when it was written (rewritten)")
                )
        elif lines:
            report.problems.append((0, f"head file {self.head_path} is missing"))
        report.problems.extend(self._against_checkpoint(hashes, len(lines)))
        return report

    def reset_checkpoint(self) -> None:
        """Point the checkpoint at the log as it is (after a deliberate restore only)."""
        with self.lock():
            seq, digest = self._tail()
            self._write_checkpoint(seq, digest)

    # -- internals ---------------------------------------------------------------------

    def _lines(self) -> list[str]:
        return [text for text, _ in self._decoded_lines()]

    def _decoded_lines(self) -> list[tuple[str, bool]]:
        """Each non-blank line as text, and whether it was valid UTF-8.

        Decoded line by line, so one corrupted line (say, bytes appended by another
        tool) is reported by number instead of failing the whole read (finding 14-6).
        """
        if not self.path.exists():
            return []
        out = []
        for raw in self.path.read_bytes().split(b"\n"):
            try:
                text, utf8 = raw.decode("utf-8"), True
            except UnicodeDecodeError:
                text, utf8 = raw.decode("utf-8", errors="replace"), False
            if text.strip():
                out.append((self._decode(text) if utf8 else text, utf8))
        return out

    def _encode(self, line: str) -> str:
        if self.keys is None:
            return line
        return _SEALED + base64.b64encode(self.keys.seal(line.encode("utf-8"))).decode("ascii")

    def _decode(self, line: str) -> str:
        if not line.startswith(_SEALED):
            return line
        if self.keys is None:
            raise AuditError(
                f"{self.path} is encrypted. Expected the project's encryption key "
                "(TAGSMITH_ENCRYPTION_KEY or governance.encryption.key_file). Got no key."
            )
        try:
            blob = base64.b64decode(line[len(_SEALED) :], validate=True)
            return self.keys.open(blob, where=str(self.path)).decode("utf-8")
        except (ValueError, StoreError):
            # An altered sealed line reads as garbage: verify reports it by number.
            return "\x00damaged"

    def _tail(self) -> tuple[int, str]:
        """(seq, hash) of the last entry, read from the end of the file."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0, GENESIS
        with self.path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            chunk = b""
            pos = size
            while pos > 0:
                step = min(4096, pos)
                pos -= step
                fh.seek(pos)
                chunk = fh.read(step) + chunk
                if chunk.rstrip(b"\n").count(b"\n") >= 1:
                    break
        last = chunk.rstrip(b"\n").split(b"\n")[-1]
        try:
            entry = json.loads(self._decode(last.decode("utf-8")))
            return int(entry["seq"]), str(entry["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(
                f"The last line of {self.path} is not an audit entry; refusing to extend a "
                "damaged log. Run 'tagsmith audit verify'."
            ) from exc

    def _read_checkpoint(self) -> tuple[int, str] | None:
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return None
        try:
            data = json.loads(self.checkpoint_path.read_text(encoding="utf-8"))
            return int(data["n"]), str(data["hash"])
        except (ValueError, KeyError, TypeError, OSError):
            return None

    def _write_checkpoint(self, seq: int, digest: str) -> None:
        if self.checkpoint_path is None:
            return
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        body = {"n": seq, "hash": digest, "log": str(self.path.resolve())}
        tmp.write_text(json.dumps(body) + "\n", encoding="utf-8")
        os.replace(tmp, self.checkpoint_path)

    def _check_not_shrunk(self, seq: int) -> None:
        """Refuse to extend a log that lost entries since the checkpoint was written."""
        mark = self._read_checkpoint()
        if mark is not None and mark[0] > seq:
            raise AuditError(
                f"Expected the audit log {self.path} to hold entry #{mark[0]} (its checkpoint "
                f"{self.checkpoint_path} says so). Got entries up to #{seq} only: entries were "
                "deleted. Run 'tagsmith audit verify'; after a deliberate restore the restore "
                "resets the checkpoint."
            )

    def _against_checkpoint(self, hashes: Mapping[int, str], n_lines: int) -> list[tuple[int, str]]:
        """Problems of the log against the checkpoint kept outside the project."""
        mark = self._read_checkpoint()
        if mark is None or mark[0] == 0:
            return []
        n, digest = mark
        where = f"the checkpoint {self.checkpoint_path} records entry #{n}"
        if n not in hashes:
            last = max(hashes, default=0)
            if last < n:
                what = "the log is missing" if not self.path.exists() else f"it ends at #{last}"
                return [(n_lines + 1, f"{where} but {what}: entries deleted")]
            return [(0, f"{where} but it is not in the log: entries deleted")]
        if hashes[n] != digest:
            return [(0, f"{where} with another hash: the log was rewritten")]
        return []

    def _write_head(self, seq: int, digest: str) -> None:
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        tmp.write_text(json.dumps({"n": seq, "hash": digest}) + "\n", encoding="utf-8")
        os.replace(tmp, self.head_path)

    def _read_head(self) -> tuple[int, str] | None:
        if not self.head_path.exists():
            return None
        try:
            data = json.loads(self.head_path.read_text(encoding="utf-8"))
            return int(data["n"]), str(data["hash"])
        except (ValueError, KeyError, TypeError):
            return (0, "")
