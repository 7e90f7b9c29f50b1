"""``tagsmith serve build`` packs the tag service as a Bento, offline (issue 21).

The build runs for real (``bentoml build`` in a child process, about a minute under
load), with every package index pointed at a closed port: a build that tried to resolve
or download a package would fail here instead of reaching the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from serving.errors import ServingError
from serving.openapi import SECURITY_SCHEMES, package_version
from tagsmith.bento import BENTOFILE, complete_stored_spec, source_root
from tagsmith.cli import main

DEAD_INDEX = "http://127.0.0.1:9/simple"


@pytest.mark.slow
def test_serve_build_makes_a_bento_without_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "shop"
    assert CliRunner().invoke(main, ["--project", str(root), "init"]).exit_code == 0
    home = tmp_path / "bentoml"
    for name, value in {
        "BENTOML_HOME": str(home),
        "PIP_INDEX_URL": DEAD_INDEX,
        "UV_INDEX_URL": DEAD_INDEX,
        "UV_DEFAULT_INDEX": DEAD_INDEX,
        "PIP_NO_INDEX": "1",
        "UV_OFFLINE": "1",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(
        main, ["--project", str(root), "serve", "build", "--version", "t1", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    built = json.loads(result.stdout)
    assert built["tag"] == "tagsmith:t1"
    bento = Path(built["path"])
    assert bento == home / "bentos" / "tagsmith" / "t1"
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert info["service"] == "tagsmith.app:TagService"
    routes = {r["route"] for r in info["schema"]["routes"]}
    assert {"/tags", "/score", "/explain", "/events", "/admin/reload"} <= routes
    # The code and the pinned requirements are packed; the project is not.
    assert (bento / "src" / "tagsmith" / "app.py").is_file()
    assert (bento / "src" / "tags" / "library" / "lifecycle.yaml").is_file()
    assert (bento / "src" / "console" / "static" / "console.js").is_file()
    assert not list((bento / "src").rglob("__pycache__"))
    assert not list((bento / "src").rglob("tagsmith.yaml"))
    packed = (bento / "env" / "python" / "requirements.txt").read_text()
    lock = (source_root() / "requirements.lock").read_text()
    pins = [ln for ln in lock.splitlines() if ln and not ln.startswith("#")]
    assert pins
    assert [pin for pin in pins if pin not in packed] == []
    # The stored OpenAPI document is the service's own (BentoML's, completed).
    _assert_documented(yaml.safe_load((bento / "apis" / "openapi.yaml").read_text()))


def _assert_documented(spec: dict[str, Any]) -> None:
    assert spec["info"]["version"] == package_version()
    assert set(spec["components"]["securitySchemes"]) == set(SECURITY_SCHEMES)
    tags = spec["paths"]["/tags"]["post"]
    assert tags["security"] == [{name: []} for name in SECURITY_SCHEMES]
    assert {"401", "403", "413"} <= set(tags["responses"])
    assert "example" in tags["requestBody"]["content"]["application/json"]
    assert "429" in spec["paths"]["/events"]["post"]["responses"]
    assert "security" not in spec["paths"].get("/livez", {}).get("get", {})


def test_the_stored_spec_is_completed_like_the_services(tmp_path: Path) -> None:
    """BentoML's generated document (no security, no errors, version None) is completed."""
    generated = {
        "openapi": "3.0.2",
        "info": {"title": "tagsmith", "version": "None"},
        "paths": {
            "/livez": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/tags": {
                "post": {
                    "requestBody": {"content": {"application/json": {"schema": {}}}},
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/events": {"post": {"responses": {"200": {"description": "ok"}}}},
        },
        "components": {"schemas": {}},
    }
    stored = tmp_path / "apis" / "openapi.yaml"
    stored.parent.mkdir()
    stored.write_text(yaml.safe_dump(generated))
    complete_stored_spec(stored)
    _assert_documented(yaml.safe_load(stored.read_text()))


def test_a_bento_without_its_spec_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match=r"apis/openapi.yaml"):
        complete_stored_spec(tmp_path / "apis" / "openapi.yaml")


def test_the_bentofile_packs_every_package_and_resolves_nothing() -> None:
    spec = yaml.safe_load((source_root() / BENTOFILE).read_text())
    assert spec["service"] == "tagsmith.app:TagService"
    assert spec["python"]["lock_packages"] is False
    packages = {
        p.parent.name for p in source_root().glob("*/__init__.py") if p.parent.name != "tests"
    }
    assert {f"{p}/**" for p in packages} <= set(spec["include"])
