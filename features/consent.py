"""Consent per customer and purpose: what each customer agreed their data may be used for.

Purposes are declared in ``governance.consent.purposes`` with what holds for a customer
without any record (``granted``: opt-out; ``refused``: opt-in). Records come from

* consent files imported with ``tagsmith customers consent import`` (``customer_id``,
  ``purpose``, ``granted`` yes/no, optional ``at``), kept in ``data/facts/consent.parquet``
  (sealed like the fact store under an encryption key);
* customer attributes named ``consent_<purpose>`` (yes/no), taken as given at signup;
* events ``consent_given`` / ``consent_withdrawn`` whose ``category`` is the purpose
  (declare both under ``facts.event_types``).

The latest record per customer and purpose wins. :meth:`ConsentBook.allowed` answers,
for a purpose and a list of customers, who may be used for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from features.contract import ConsentConfig
from features.crypto import EncryptionKeys, read_parquet, write_parquet
from features.errors import StoreError

__all__ = ["ConsentBook", "ConsentConfig", "ConsentImport", "allowed_for", "parse_consent"]

_YES = {"1", "true", "yes", "y", "granted", "given", "opt_in", "opt-in"}
_NO = {"0", "false", "no", "n", "refused", "withdrawn", "opt_out", "opt-out"}
COLUMNS = ("customer_id", "purpose", "granted", "at", "source")


def parse_consent(value: object) -> bool | None:
    """yes/no-like text as a bool (None: not recognised)."""
    text = str(value).strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    return None


class ConsentImport(BaseModel):
    """Outcome of one consent file import."""

    accepted: int
    rejected: list[str]


class ConsentBook:
    """Consent records of a project.

    Args:
        path: The records file (``data/facts/consent.parquet``).
        config: The declared purposes.
        keys: Encryption keys (the file is sealed with them).
        customers: Loads the customers table, for ``consent_<purpose>`` attributes.
        events: Loads events (``customer_id, occurred_at, event_type, category``), for
            ``consent_given`` / ``consent_withdrawn`` events.
        marker: A token that changes when the facts change (cache key of the records).
    """

    def __init__(
        self,
        path: Path,
        config: ConsentConfig,
        *,
        keys: EncryptionKeys | None = None,
        customers: Callable[[], pd.DataFrame] | None = None,
        events: Callable[[], pd.DataFrame] | None = None,
        marker: Callable[[], object] | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = config
        self.keys = keys
        self._customers = customers
        self._events = events
        self._marker = marker
        self._cache: tuple[object, pd.DataFrame] | None = None

    @property
    def enabled(self) -> bool:
        """Whether any purpose is declared (consent is checked)."""
        return bool(self.config.purposes)

    def check_purpose(self, purpose: str | None, *, what: str) -> str:
        """``purpose`` when declared.

        Raises:
            StoreError: It is missing or not declared (the message names ``what``).
        """
        declared = sorted(self.config.purposes)
        if purpose is None:
            raise StoreError(
                f"{what} must declare its purpose (one of {declared}, "
                "governance.consent.purposes). Got none."
            )
        if purpose not in self.config.purposes:
            raise StoreError(
                f"{what}: expected a purpose declared in governance.consent.purposes "
                f"({declared}). Got {purpose!r}."
            )
        return purpose

    def records(self) -> pd.DataFrame:
        """Imported records (``customer_id, purpose, granted, at, source``)."""
        if not self.path.is_file():
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in COLUMNS})
        return read_parquet(self.path, self.keys).to_pandas()

    def _attribute_records(self) -> pd.DataFrame:
        if self._customers is None:
            return pd.DataFrame(columns=list(COLUMNS))
        customers = self._customers()
        frames = []
        for purpose in self.config.purposes:
            column = f"consent_{purpose}"
            if column not in customers.columns:
                continue
            granted = customers[column].map(parse_consent)
            known = granted.notna()
            frames.append(
                pd.DataFrame(
                    {
                        "customer_id": customers.loc[known, "customer_id"].astype(str),
                        "purpose": purpose,
                        "granted": granted[known].astype(bool),
                        "at": pd.to_datetime(customers.loc[known, "signup_at"], utc=True),
                        "source": f"customers.{column}",
                    }
                )
            )
        return (
            pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
        )

    def _event_records(self) -> pd.DataFrame:
        if self._events is None:
            return pd.DataFrame(columns=list(COLUMNS))
        events = self._events()
        kinds = events["event_type"].astype(str)
        mine = events[kinds.isin(["consent_given", "consent_withdrawn"])]
        mine = mine[mine["category"].astype(str).isin(list(self.config.purposes))]
        return pd.DataFrame(
            {
                "customer_id": mine["customer_id"].astype(str),
                "purpose": mine["category"].astype(str),
                "granted": mine["event_type"].astype(str) == "consent_given",
                "at": pd.to_datetime(mine["occurred_at"], utc=True),
                "source": "events",
            }
        )

    def latest(self) -> pd.DataFrame:
        """The record in force per customer and purpose (cached while nothing changed)."""
        key = (
            self.path.stat().st_mtime_ns if self.path.is_file() else 0,
            self._marker() if self._marker is not None else None,
        )
        if self._cache is not None and self._cache[0] == key and self._marker is not None:
            return self._cache[1]
        found = self._latest()
        self._cache = (key, found)
        return found

    def _latest(self) -> pd.DataFrame:
        parts = [
            p for p in (self._attribute_records(), self._event_records(), self.records()) if len(p)
        ]
        if not parts:
            return pd.DataFrame(columns=list(COLUMNS))
        every = pd.concat(parts, ignore_index=True)
        every["at"] = pd.to_datetime(every["at"], utc=True)
        every = every.sort_values("at", kind="stable")
        return every.drop_duplicates(["customer_id", "purpose"], keep="last").reset_index(drop=True)

    def allowed(self, purpose: str, customer_ids: Sequence[str]) -> np.ndarray:
        """Per customer, whether their data may be used for ``purpose``.

        Raises:
            StoreError: ``purpose`` is not declared.
        """
        self.check_purpose(purpose, what="a use of customer data")
        latest = self.latest()
        mine = latest[latest["purpose"] == purpose]
        granted = dict(
            zip(mine["customer_id"].astype(str), mine["granted"].astype(bool), strict=True)
        )
        default = self.config.purposes[purpose] == "granted"
        return np.fromiter(
            (granted.get(str(c), default) for c in customer_ids),
            dtype=bool,
            count=len(customer_ids),
        )

    def import_frame(self, frame: pd.DataFrame, *, source: str, now: pd.Timestamp) -> ConsentImport:
        """Validate consent rows and add those that pass; returns counts and reasons.

        Each rejected row is named by its line (header = line 1), field, expected and got.
        """
        missing = [c for c in ("customer_id", "purpose", "granted") if c not in frame.columns]
        if missing:
            raise StoreError(
                f"{source}: expected columns customer_id, purpose, granted (and optional at). "
                f"Got {list(frame.columns)} (missing {missing})."
            )
        rejected: list[str] = []
        rows = []
        for i, row in enumerate(frame.to_dict("records"), start=2):
            cid = str(row.get("customer_id") or "").strip()
            purpose = str(row.get("purpose") or "").strip()
            granted = parse_consent(row.get("granted"))
            at = pd.to_datetime(row.get("at") or now, utc=True, errors="coerce")
            if not cid:
                rejected.append(
                    f"{source} line {i}: field 'customer_id': expected an id, got blank"
                )
            elif purpose not in self.config.purposes:
                rejected.append(
                    f"{source} line {i}: field 'purpose': expected one of "
                    f"{sorted(self.config.purposes)}, got {purpose!r}"
                )
            elif granted is None:
                rejected.append(
                    f"{source} line {i}: field 'granted': expected yes/no, "
                    f"got {row.get('granted')!r}"
                )
            elif pd.isna(at):
                rejected.append(
                    f"{source} line {i}: field 'at': expected a date, got {row.get('at')!r}"
                )
            else:
                rows.append((cid, purpose, granted, at, source))
        if rows:
            new = pd.DataFrame(rows, columns=list(COLUMNS))
            merged = (
                pd.concat([self.records(), new], ignore_index=True) if self.path.is_file() else new
            )
            stamps = pd.to_datetime(merged["at"], utc=True)
            table = pa.table(
                {
                    "customer_id": pa.array(merged["customer_id"].astype(str).tolist()),
                    "purpose": pa.array(merged["purpose"].astype(str).tolist()),
                    "granted": pa.array(merged["granted"].astype(bool).tolist()),
                    "at": pa.array(stamps.dt.tz_convert(None).to_numpy(), pa.timestamp("us")).cast(
                        pa.timestamp("us", tz="UTC")
                    ),
                    "source": pa.array(merged["source"].astype(str).tolist()),
                }
            )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                write_parquet(table, tmp, self.keys, compression="zstd")
                tmp.replace(self.path)
            finally:
                tmp.unlink(missing_ok=True)
        return ConsentImport(accepted=len(rows), rejected=rejected)

    def summary(self) -> dict[str, dict[str, int]]:
        """Per declared purpose: customers with a record granting and refusing it."""
        latest = self.latest()
        out: dict[str, dict[str, int]] = {}
        for purpose, default in self.config.purposes.items():
            mine = latest[latest["purpose"] == purpose]
            out[purpose] = {
                "granted": int(mine["granted"].astype(bool).sum()),
                "refused": int((~mine["granted"].astype(bool)).sum()),
                "default_granted": int(default == "granted"),
            }
        return out


def allowed_for(
    book: ConsentBook | None,
) -> Callable[[str, Sequence[str]], np.ndarray] | None:
    """``book.allowed`` when consent is checked, else None (everyone may be used)."""
    return book.allowed if book is not None and book.enabled else None
