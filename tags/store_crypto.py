"""Opening a DuckDB file under the project's encryption keys (DuckDB's database
encryption, AES-GCM), for the tag store."""

from __future__ import annotations

from pathlib import Path

import duckdb

from features.crypto import EncryptionKeys
from tags.errors import TagStoreError
from tags.store_format import sql_str

__all__ = ["attach_encrypted"]


def attach_encrypted(
    path: Path, keys: EncryptionKeys, *, write: bool, alias: str = "tagstore"
) -> duckdb.DuckDBPyConnection:
    """A connection with ``path`` attached under ``keys`` (current key first, older keys
    while rotating) and selected with ``USE``; a plain file is attached as it is.

    Raises:
        TagStoreError: No key held opens the file.
        duckdb.IOException: Another process holds the file (callers retry).
    """
    con = duckdb.connect(":memory:")
    try:
        if write:
            # DuckDB writes encrypted files through OpenSSL (its httpfs extension) or,
            # with this setting, its built-in MbedTLS; no extension is downloaded here.
            con.execute("SET force_mbedtls_unsafe = 'true'")
        mode = "" if write else ", READ_ONLY"
        target = sql_str(path)
        for i in range(len(keys.keys)):
            try:
                con.execute(
                    f"ATTACH '{target}' AS {alias} (ENCRYPTION_KEY '{keys.duckdb_key(i)}'{mode})"
                )
                break
            except duckdb.InvalidInputException:
                continue  # another key
            except duckdb.CatalogException as exc:
                if "not encrypted" not in str(exc):
                    raise
                con.execute(f"ATTACH '{target}' AS {alias} ({mode.strip(', ') or 'READ_WRITE'})")
                break
        else:
            raise TagStoreError(
                f"The tag store {path} is encrypted under a key {keys.source} does not hold "
                f"(it holds {', '.join(keys.ids)})."
            )
        con.execute(f"USE {alias}")
    except BaseException:
        con.close()
        raise
    return con
