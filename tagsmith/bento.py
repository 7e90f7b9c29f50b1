"""``tagsmith serve build``: the tag service packed as a Bento, the way BentoML deploys.

``bentofile.yaml`` (at the root of the source tree) names the service, the packages to
pack and the pinned ``requirements.lock``. The build runs ``bentoml build`` in a child
process with the project's serving environment, because importing the service object
(``tagsmith.app:TagService``) loads the project named by ``TAGSMITH_PROJECT``. It is
offline: the lock is packed as it is (``lock_packages: false``), nothing is resolved or
downloaded, and no container is built (``bentoml containerize`` does that, later).

BentoML writes the Bento's ``apis/openapi.yaml`` from the API signatures alone; the
service completes its ``/docs.json`` answer at run time (``serving.openapi``: security
schemes, examples, the 401/403/413/429 responses, the version), which a build never
runs. So the build completes the stored document the same way, and a Bento's
``openapi.yaml`` is the one the running service documents.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from serving.errors import ServingError
from serving.openapi import complete_spec, package_version
from tagsmith.app import service_env
from tagsmith.project import Project

__all__ = ["BentoBuild", "build_bento", "complete_stored_spec", "source_root"]

BENTOFILE = "bentofile.yaml"
_TAG_PREFIX = "__tag__:"


@dataclass(frozen=True)
class BentoBuild:
    """A built Bento.

    Attributes:
        tag: ``name:version`` (``bentoml serve TAG``, ``bentoml containerize TAG``).
        home: The BentoML home holding it (``BENTOML_HOME`` of the build).
        path: The Bento's folder.
    """

    tag: str
    home: Path
    path: Path


def source_root() -> Path:
    """The folder holding the packages (and ``bentofile.yaml`` in a source checkout)."""
    import serving

    return Path(serving.__file__).resolve().parents[1]


def build_bento(project: Project, *, version: str | None = None) -> BentoBuild:
    """Build the tag service into a Bento in the project's BentoML home.

    Args:
        project: The project whose settings the service is built with (it is not packed:
            mount it where ``TAGSMITH_PROJECT`` points when the Bento runs).
        version: The Bento version (default: BentoML generates one).

    Raises:
        ServingError: No ``bentofile.yaml`` (an installed package, not a source
            checkout), or ``bentoml build`` failed (its last output lines are quoted).
    """
    root = source_root()
    bentofile = root / BENTOFILE
    if not bentofile.is_file():
        raise ServingError(
            f"Expected {bentofile} next to the tagsmith packages. Got none: build the Bento "
            "from a source checkout of Tagsmith (the file lists what to pack)."
        )
    env = service_env(project)
    argv = [sys.executable, "-m", "bentoml", "build", str(root), "-f", str(bentofile)]
    argv += ["--output", "tag", "--do-not-track"]
    if version:
        argv += ["--version", version]
    done = subprocess.run(argv, env=env, cwd=root, capture_output=True, text=True, check=False)
    tags = [ln for ln in done.stdout.splitlines() if ln.startswith(_TAG_PREFIX)]
    if done.returncode != 0 or not tags:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ServingError(
            f"Expected 'bentoml build' to build {bentofile}. Got exit status "
            f"{done.returncode}:\n{tail}"
        )
    tag = tags[-1].removeprefix(_TAG_PREFIX)
    home = Path(env["BENTOML_HOME"])
    name, _, built = tag.partition(":")
    path = home / "bentos" / name / built
    complete_stored_spec(path / "apis" / "openapi.yaml")
    return BentoBuild(tag=tag, home=home, path=path)


def complete_stored_spec(spec_file: Path) -> None:
    """Rewrite BentoML's generated OpenAPI document as the service documents itself.

    Raises:
        ServingError: The Bento has no readable ``apis/openapi.yaml``.
    """
    try:
        spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ServingError(
            f"Expected BentoML's OpenAPI document at {spec_file}. Got: {exc}"
        ) from exc
    if not isinstance(spec, dict):
        raise ServingError(f"Expected a mapping in {spec_file}. Got {type(spec).__name__}.")
    complete_spec(spec, version=package_version())
    tmp = spec_file.with_name(spec_file.name + ".tmp")
    tmp.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(spec_file)
