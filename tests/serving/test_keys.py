from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.errors import ServingError
from serving.keys import ApiKeyStore


def test_key_verifies_and_maps_to_role(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.json")
    key = store.add("crm", "marketing")
    found = store.verify(key)
    assert found is not None
    assert (found.name, found.role) == ("crm", "marketing")


def test_file_holds_no_clear_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = ApiKeyStore(path).add("crm", "marketing")
    text = path.read_text()
    secret = key.split("_", 2)[2]
    assert secret not in text
    assert json.loads(text)["keys"][0]["sha256"]
    assert path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "presented",
    ["", "nope", "tsk_000000000000_" + "a" * 43, None],
)
def test_invalid_keys_are_refused(tmp_path: Path, presented: str | None) -> None:
    store = ApiKeyStore(tmp_path / "keys.json")
    store.add("crm", "marketing")
    assert store.verify(presented) is None


def test_tampered_secret_is_refused(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.json")
    key = store.add("crm", "marketing")
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert store.verify(flipped) is None


def test_revoked_key_stops_working_in_a_running_store(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    serving_view = ApiKeyStore(path)
    key = ApiKeyStore(path).add("crm", "marketing")
    assert serving_view.verify(key) is not None  # picks up a key added by another process
    ApiKeyStore(path).revoke("crm")
    assert serving_view.verify(key) is None


def test_duplicate_and_bad_names_are_refused(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.json")
    store.add("crm", "marketing")
    with pytest.raises(ServingError, match="already has"):
        store.add("crm", "admin")
    with pytest.raises(ServingError, match="key name"):
        store.add("bad name!", "admin")
    with pytest.raises(ServingError, match="stored key"):
        store.revoke("ghost")


def test_pepper_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = ApiKeyStore(path).pepper
    assert len(first) == 32
    assert ApiKeyStore(path).pepper == first
