"""A small activation world: the standard catalogue, the default policy, a tag store
with hand-made snapshots, an outbox, applied trigger definitions and a real receiver."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from activation.config import ActivationConfig
from activation.definitions import check_definitions, load_definitions
from activation.dispatcher import Activation, Dispatcher
from activation.outbox import Outbox
from activation.versions import TriggerHistory
from tags.audit import AuditLog
from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.policy import AccessPolicy
from tags.store import TagStore
from tags.transitions import TransitionLog
from tests.activation.receiver import Receiver

SECRET = "s3cret-for-tests"
SECRET_ENV = "TAGSMITH_TEST_HOOK_SECRET"


def long_table(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """The engine's long format from (customer, tag, value) triples."""
    df = pd.DataFrame(rows, columns=["customer_id", "tag_id", "value"])
    df["score"] = np.nan
    df["source"] = "rule"
    df["version"] = df["tag_id"] + "@1"
    return df


@dataclass
class World:
    root: Path
    activation: Activation
    audiences: dict[str, str]

    @property
    def store(self) -> TagStore:
        return self.activation.store

    @property
    def outbox(self) -> Outbox:
        return self.activation.outbox

    def snapshot(self, rows: list[tuple[str, str, str]], as_of: str) -> None:
        self.store.write_snapshot(long_table(rows), as_of=as_of)

    def define(self, data: dict[str, Any], name: str = "defs.yaml") -> None:
        folder = self.root / "triggers"
        folder.mkdir(exist_ok=True)
        (folder / name).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    def apply(self) -> int:
        defs = load_definitions(self.root / "triggers")
        check = check_definitions(
            defs,
            catalogue=self.activation.catalogue,
            policy=self.activation.policy,
            audiences=self.audiences,
        )
        version, _ = self.activation.history.apply(
            defs,
            check,
            position=TransitionLog(self.store).last_seq(),
            applied_at=datetime.now(UTC),
            applied_by="test",
        )
        return version

    def dispatcher(self, **kwargs: Any) -> Dispatcher:
        env = {SECRET_ENV: SECRET, **kwargs.pop("environ", {})}
        return Dispatcher(self.activation, environ=env, **kwargs)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return Catalogue.load(LIBRARY_DIR)


@pytest.fixture
def world(tmp_path: Path, catalogue: Catalogue) -> Iterator[World]:
    activation = Activation(
        store=TagStore(tmp_path / "data" / "tags.duckdb"),
        outbox=Outbox(tmp_path / "data" / "activation.sqlite"),
        history=TriggerHistory(tmp_path / "data" / "trigger_versions"),
        catalogue=catalogue,
        policy=AccessPolicy.default(),
        audit=AuditLog(tmp_path / "data" / "audit.log"),
        root=tmp_path,
        lock_path=tmp_path / "data" / "activation.lock",
        config=ActivationConfig(poll_interval_s=0.05),
    )
    yield World(tmp_path, activation, {})
    activation.outbox.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(secret=SECRET.encode()).up()
    yield r
    r.down()


def webhook(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """A webhook destination definition with fast retries for tests."""
    return {
        "name": name,
        "type": "webhook",
        "url": url,
        "owner": "crm-team",
        "purpose": "marketing",
        "secret_env": SECRET_ENV,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.5,
        "timeout_s": 1.0,
        **extra,
    }


def trigger(name: str, *, destination: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "owner": "crm-team",
        "role": "marketing",
        "purpose": "marketing",
        "status": "active",
        "destination": destination,
        **extra,
    }
