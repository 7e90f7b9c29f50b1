"""The ``tags`` section of ``tagsmith.yaml``: categories and their display-name prefixes."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["BUILTIN_CATEGORIES", "StoreConfig", "TagsConfig", "default_prefixes"]

BUILTIN_CATEGORIES: tuple[str, ...] = (
    "basic",
    "behaviour",
    "value",
    "preference",
    "lifecycle",
    "risk",
)

_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


def default_prefixes() -> dict[str, list[str]]:
    """Accepted display-name prefixes of the built-in categories (Chinese and English)."""
    return {
        "basic": ["基础_", "basic_"],
        "behaviour": ["行为_", "behaviour_"],
        "value": ["价值_", "value_"],
        "preference": ["偏好_", "preference_"],
        "lifecycle": ["生命周期_", "lifecycle_"],
        "risk": ["风险_", "risk_"],
    }


class TagsConfig(BaseModel):
    """Tag categories and naming.

    Attributes:
        prefixes: Category -> the display-name prefixes it accepts (any one of them).
            Built-in categories may be given new prefixes here.
        extra_categories: Categories beyond the built-in six, each with its prefixes
            (e.g. ``psychology: ["心理_", "psychology_"]``).
    """

    model_config = ConfigDict(extra="forbid")

    prefixes: dict[str, list[str]] = Field(default_factory=default_prefixes)
    extra_categories: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("prefixes")
    @classmethod
    def _prefixes_of_builtins(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(value) - set(BUILTIN_CATEGORIES))
        if unknown:
            raise ValueError(
                f"prefixes are for the built-in categories {list(BUILTIN_CATEGORIES)}; "
                f"got {unknown} (declare new ones under extra_categories)"
            )
        merged = default_prefixes()
        merged.update(value)
        return merged

    @model_validator(mode="after")
    def _extras_are_new(self) -> TagsConfig:
        for name, prefixes in {**self.prefixes, **self.extra_categories}.items():
            if not _IDENT.match(name):
                raise ValueError(f"category names must be lower snake_case, got {name!r}")
            if not prefixes or any(not p.strip() for p in prefixes):
                raise ValueError(f"category {name!r} needs at least one non-blank prefix")
        clash = sorted(set(self.extra_categories) & set(BUILTIN_CATEGORIES))
        if clash:
            raise ValueError(f"{clash} are built in; set their prefixes under 'prefixes'")
        return self

    @property
    def categories(self) -> dict[str, list[str]]:
        """Every category (built-in, then declared) -> its prefixes."""
        return {**self.prefixes, **self.extra_categories}


class StoreConfig(BaseModel):
    """``store:`` section of ``tagsmith.yaml`` (tag store and coverage monitoring).

    Attributes:
        share_shift_threshold: A tag value whose share of customers moves by more than
            this between two runs (absolute: 0.05 = 5 points) is flagged.
    """

    model_config = ConfigDict(extra="forbid")

    share_shift_threshold: float = Field(default=0.05, gt=0.0, lt=1.0)
