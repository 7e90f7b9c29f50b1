"""The service's settings: the project's serving config, overridden by TAGSMITH_* variables."""

from __future__ import annotations

import pytest

from serving.config import ServingConfig
from serving.errors import ServingError
from serving.settings import ServingSettings, load_settings


def test_defaults_are_the_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ServingConfig.model_fields:
        monkeypatch.delenv(f"TAGSMITH_{name.upper()}", raising=False)
    assert load_settings().model_dump() == ServingConfig().model_dump()


def test_environment_overrides_the_project_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGSMITH_WORKERS", "3")
    monkeypatch.setenv("TAGSMITH_MODELS", '["churn-predictor"]')
    settings = load_settings(ServingConfig(workers=2, request_timeout_s=9))
    assert isinstance(settings, ServingSettings)
    assert settings.workers == 3
    assert settings.models == ["churn-predictor"]
    assert settings.request_timeout_s == 9


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGSMITH_WORKERS", "0")
    with pytest.raises(ServingError, match="TAGSMITH_WORKERS") as info:
        load_settings(ServingConfig())
    assert "'0'" in str(info.value)
