"""Files on any Hadoop filesystem (local, HDFS, S3A ...) through the session's JVM.

Outputs are written to a temporary sibling and renamed into place, so a failed or
killed job never replaces what an earlier run wrote.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["HadoopFiles", "write_parquet"]


class HadoopFiles:
    """Exists / delete / rename / small text files under any Hadoop URI."""

    def __init__(self, session: SparkSession) -> None:
        self._jvm: Any = session._jvm
        self._conf: Any = session._jsc.hadoopConfiguration()

    def _path(self, uri: str) -> tuple[Any, Any]:
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path, path.getFileSystem(self._conf)

    def exists(self, uri: str) -> bool:
        """Whether ``uri`` exists."""
        path, fs = self._path(uri)
        return bool(fs.exists(path))

    def delete(self, uri: str) -> None:
        """Remove ``uri`` (recursively) if it exists."""
        path, fs = self._path(uri)
        if fs.exists(path):
            fs.delete(path, True)

    def replace(self, source: str, target: str) -> None:
        """Move ``source`` to ``target``, replacing what was there.

        The old ``target`` is first moved aside and removed only after the rename, so
        at every moment one complete copy exists.
        """
        src, fs = self._path(source)
        dst, _ = self._path(target)
        parent = dst.getParent()
        if parent is not None and not fs.exists(parent):
            fs.mkdirs(parent)
        aside = None
        if fs.exists(dst):
            aside = self._jvm.org.apache.hadoop.fs.Path(f"{target}.old-{uuid.uuid4().hex[:8]}")
            fs.rename(dst, aside)
        if not fs.rename(src, dst):
            if aside is not None:
                fs.rename(aside, dst)
            raise OSError(f"Expected to move {source} to {target}. Got a refused rename.")
        if aside is not None:
            fs.delete(aside, True)

    def write_json(self, uri: str, payload: dict[str, Any]) -> None:
        """Write ``payload`` as JSON to ``uri`` (overwriting)."""
        path, fs = self._path(uri)
        stream = fs.create(path, True)
        try:
            stream.write(bytearray(json.dumps(payload, indent=2, sort_keys=True).encode()))
        finally:
            stream.close()

    def read_json(self, uri: str) -> dict[str, Any] | None:
        """The JSON object at ``uri`` (``None`` when absent)."""
        path, fs = self._path(uri)
        if not fs.exists(path):
            return None
        stream = fs.open(path)
        try:
            reader = self._jvm.java.io.BufferedReader(
                self._jvm.java.io.InputStreamReader(stream, "UTF-8")
            )
            lines = []
            line = reader.readLine()
            while line is not None:
                lines.append(line)
                line = reader.readLine()
        finally:
            stream.close()
        data: dict[str, Any] = json.loads("\n".join(lines))
        return data

    def temp_sibling(self, uri: str) -> str:
        """A fresh path next to ``uri`` for writing before the rename."""
        return f"{uri.rstrip('/')}.tmp-{uuid.uuid4().hex[:12]}"


def write_parquet(frame: DataFrame, uri: str, *, partition_by: Sequence[str] = ()) -> None:
    """Write ``frame`` as a Parquet folder at ``uri``: beside it first, then renamed
    into place, so a failed job leaves the previous folder as it was."""
    files = HadoopFiles(frame.sparkSession)
    temp = files.temp_sibling(uri)
    try:
        writer = frame.write
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.parquet(temp)
        files.replace(temp, uri)
    finally:
        files.delete(temp)
