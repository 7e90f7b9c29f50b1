"""The tag service's settings: ``tagsmith.yaml``'s ``serving`` section, then the environment.

:class:`ServingSettings` has exactly the fields (and defaults) of
:class:`serving.config.ServingConfig`; pydantic-settings reads each from an environment
variable ``TAGSMITH_<FIELD>`` (``TAGSMITH_WORKERS=2``, ``TAGSMITH_REQUEST_TIMEOUT_S=3``,
``TAGSMITH_MODELS='["churn-predictor"]'``), which wins over the value from the project's
config. This is the only place the service reads its environment.
"""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from serving.config import ServingConfig
from serving.errors import ServingError

__all__ = ["ENV_PREFIX", "ServingSettings", "load_settings"]

ENV_PREFIX = "TAGSMITH_"


class ServingSettings(ServingConfig, BaseSettings):
    """:class:`ServingConfig` with environment overrides (prefix ``TAGSMITH_``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides what the project's config (passed in) says.
        return env_settings, init_settings


def load_settings(config: ServingConfig | None = None) -> ServingSettings:
    """The service's settings: ``config`` (default: built-in defaults), then the environment.

    Raises:
        ServingError: An environment variable holds an invalid value; the message
            names the variable and what was expected.
    """
    base = config.model_dump() if config is not None else {}
    try:
        return ServingSettings(**base)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}. "
            f"Got {err.get('input')!r} instead."
            for err in exc.errors()
        )
        raise ServingError(f"Invalid tag service settings in the environment: {problems}") from exc
