"""``activation:`` section of ``tagsmith.yaml``: how the dispatcher runs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ActivationConfig"]


class ActivationConfig(BaseModel):
    """Dispatcher settings (destinations carry their own delivery settings).

    Attributes:
        poll_interval_s: How often the dispatcher looks for new transitions and due
            retries when idle.
        deliver_after_run: ``tagsmith tags run`` queues the triggers its transitions
            fire and makes one delivery attempt for each (retries are left to the
            dispatcher), unless a running dispatcher holds the lock.
        deliver_after_run_s: Upper bound on that delivery pass, in seconds.
        in_service: ``tagsmith serve`` hosts the dispatcher loop in the service.
        max_in_flight: Batches sent at the same time, over all destinations.
        audit_deliveries: Append one audit entry per delivered or dead batch.
    """

    model_config = ConfigDict(extra="forbid")

    poll_interval_s: float = Field(default=1.0, gt=0.0, le=60.0)
    deliver_after_run: bool = True
    deliver_after_run_s: float = Field(default=60.0, ge=0.0, le=3600.0)
    in_service: bool = False
    max_in_flight: int = Field(default=4, ge=1, le=64)
    audit_deliveries: bool = True
