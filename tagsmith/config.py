"""Project configuration: ``tagsmith.yaml``, validated with pydantic.

Each package owns the model of its own section (``features.FactsConfig``, ...); this
module only composes them and turns validation errors into messages that name the
file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from activation.config import ActivationConfig
from console.config import ConsoleConfig
from features.contract import FactsConfig
from serving.config import ServingConfig
from spark.config import SparkConfig
from streaming.config import StreamingConfig
from tags.config import StoreConfig, TagsConfig
from tags.governance import GovernanceConfig
from tags.policy import AccessConfig
from tagsmith.errors import ConfigError
from training.config import TrainingConfig
from training.gates import PromotionConfig

__all__ = ["CONFIG_FILENAME", "ProjectConfig", "dump_config", "load_config"]

CONFIG_FILENAME = "tagsmith.yaml"


class ProjectConfig(BaseModel):
    """The whole of ``tagsmith.yaml``.

    Attributes:
        name: Project name, shown in reports.
        data_dir: Where stores live, relative to the project folder.
        facts: The fact-tag contract's configurable part.
        tags: Tag categories and their display-name prefixes.
        store: Tag store and coverage monitoring.
        access: Access policy defaults (the caller's default role).
        training: Label semantics and estimator settings of the predictors.
        promotion: Gates and limits of model promotion (``training.gates``).
        serving: The tag service (port, watched alias, reload interval, limits).
        activation: The trigger dispatcher (``activation.ActivationConfig``).
        console: The web console served with it at ``/ui``.
        streaming: Real-time tagging (``POST /events``, the NATS consumer).
        governance: Catalogue governance (``tags lint`` thresholds, ...).
        spark: The Spark engine (``--engine spark``): master, partitions, outputs.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "tagsmith-project"
    data_dir: str = "data"
    facts: FactsConfig = Field(default_factory=FactsConfig)
    tags: TagsConfig = Field(default_factory=TagsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    activation: ActivationConfig = Field(default_factory=ActivationConfig)
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    governance: GovernanceConfig = Field(default_factory=GovernanceConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)


def format_validation_error(exc: ValidationError, source: str) -> str:
    """Render a pydantic error as 'FILE: key 'a.b': expected ..., got ...' lines."""
    lines = [f"{source} is invalid ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        got = err.get("input")
        got_text = "" if err["type"] == "missing" else f" Got {got!r} instead."
        if err["type"] == "extra_forbidden":
            lines.append(f"  key '{key}': not a known setting (check the spelling).")
        else:
            lines.append(f"  key '{key}': {err['msg']}.{got_text}")
    return "\n".join(lines)


def load_config(path: Path) -> ProjectConfig:
    """Read and validate ``tagsmith.yaml``.

    Raises:
        ConfigError: The file is missing, is not YAML, or breaks the schema; the
            message names the file and each offending key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"Expected a project config at {path}. Got no such file.") from exc
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping of settings. Got {type(data).__name__} instead."
        )
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc


def dump_config(config: ProjectConfig) -> str:
    """YAML text of ``config`` with every default spelled out (for ``tagsmith init``)."""
    header = (
        "# Tagsmith project configuration. Every key is documented in the README;\n"
        "# unknown keys are refused so typos cannot pass silently.\n"
    )
    body = yaml.safe_dump(
        config.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True
    )
    return header + body
