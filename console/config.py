"""The ``console`` section of ``tagsmith.yaml``: the web console served at ``/ui``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ConsoleConfig"]


class ConsoleConfig(BaseModel):
    """How the web console behaves.

    Attributes:
        enabled: Serve the console at ``/ui`` beside the JSON endpoints.
        session_hours: How long a sign-in lasts (the session cookie expires after it;
            revoking the API key ends it at once).
        sample_rows: Customers shown as the sample of an audience.
        history_runs: Snapshots kept in memory for customer histories and audience
            counts (the newest ones; each costs about 3 bytes per customer and tag).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    session_hours: float = Field(default=8.0, gt=0, le=168)
    sample_rows: int = Field(default=20, ge=1, le=200)
    history_runs: int = Field(default=12, ge=1, le=120)
