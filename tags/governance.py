"""The ``governance`` section of ``tagsmith.yaml``: how the catalogue is combed and kept.

Each part is owned by the module that applies it (``tags.lint`` for redundancy and
dead tags); this model only composes them so the project config has one section.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from features.consent import ConsentConfig
from tags.lint import LintConfig

__all__ = ["EncryptionConfig", "GovernanceConfig"]


class EncryptionConfig(BaseModel):
    """``governance.encryption``: where the encryption key comes from (never the key).

    Attributes:
        key_env: Environment variable holding the key(s): URL-safe base64 of 32 bytes,
            the current key first and older ones after commas while rotating.
        key_file: Absolute path of a file holding the key(s) the same way, outside the
            project folder (used when the variable is unset).
    """

    model_config = ConfigDict(extra="forbid")

    key_env: str = "TAGSMITH_ENCRYPTION_KEY"
    key_file: str | None = None


class GovernanceConfig(BaseModel):
    """``governance:`` in ``tagsmith.yaml``.

    Attributes:
        lint: Thresholds of ``tagsmith tags lint`` (overlap, similar names, dead tags).
        encryption: Where the key of encryption at rest comes from.
        consent: Declared purposes (``features.consent``): exports, triggers and syncs
            leave out customers who did not consent to theirs.
    """

    model_config = ConfigDict(extra="forbid")

    lint: LintConfig = Field(default_factory=LintConfig)
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig)
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
