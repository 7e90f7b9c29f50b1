"""``tagsmith serve build``: the tag service packed as a Bento, the way BentoML deploys.

``bentofile.yaml`` (at the root of the source tree) names the service, the packages to
pack and the pinned ``requirements.lock``. The build runs ``bentoml build`` in a child
process with the project's serving environment, because importing the service object
(``tagsmith.app:TagService``) loads the project named by ``TAGSMITH_PROJECT``. It is
offline: the lock is packed as it is (``lock_packages: false``), nothing is resolved or
downloaded, and no container is built (``bentoml containerize`` does that, later).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from serving.errors import ServingError
from tagsmith.app import service_env
from tagsmith.project import Project

__all__ = ["BentoBuild", "build_bento", "source_root"]

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
    return BentoBuild(tag=tag, home=home, path=home / "bentos" / name / built)
