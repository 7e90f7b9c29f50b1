"""``streaming:`` section of ``tagsmith.yaml``: real-time tagging and its NATS consumer."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["StreamingConfig"]


class StreamingConfig(BaseModel):
    """Real-time tagging settings.

    Attributes:
        enabled: The service accepts ``POST /events`` and serves live values.
        live_poll_s: How often the service reads live values other processes wrote
            (a ``tagsmith stream run`` consumer); 0: never.
        max_waiting: Batches allowed to wait for tagging before ``POST /events``
            answers 429 (back-pressure instead of unbounded memory).
        consume_in_service: ``tagsmith serve`` also runs the NATS consumer (else run
            ``tagsmith stream run`` beside it).
        nats_url: NATS server of the consumer (``tagsmith stream run --nats`` overrides).
        subject: Subjects the consumer reads (the stream captures them).
        stream: JetStream stream name (created when missing).
        durable: Durable consumer name: its position survives restarts.
        batch_size: Messages fetched and tagged as one micro-batch, at most.
        batch_wait_s: How long one fetch (a long poll) waits when no message is there;
            it returns as soon as messages arrive.
        ack_wait_s: Seconds before an unacknowledged message is redelivered.
        max_deliver: Deliveries of one message before it is given up (a poison message
            is quarantined on its first delivery, so this bounds transient failures).
        gil_switch_ms: The interpreter's thread switch interval in the process that tags
            in real time (``sys.setswitchinterval``; Python's default is 5 ms). The
            tagger's two stages and the request threads hand the GIL back and forth
            around every numpy, Arrow, DuckDB and LightGBM call; at 5 ms a thread coming
            back from such a call waits up to 5 ms for the GIL while another thread runs
            Python, hundreds of times per micro-batch.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    live_poll_s: float = Field(default=0.2, ge=0.0, le=60.0)
    max_waiting: int = Field(default=64, ge=1, le=10_000)
    consume_in_service: bool = False
    nats_url: str = "nats://127.0.0.1:4222"
    subject: str = "events.>"
    stream: str = Field(default="TAGSMITH_EVENTS", pattern=r"^[A-Za-z0-9_-]+$")
    durable: str = Field(default="tagsmith-tagger", pattern=r"^[A-Za-z0-9_-]+$")
    batch_size: int = Field(default=500, ge=1, le=10_000)
    batch_wait_s: float = Field(default=1.0, gt=0.0, le=30.0)
    ack_wait_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    max_deliver: int = Field(default=20, ge=1, le=1000)
    gil_switch_ms: float = Field(default=0.5, ge=0.05, le=100.0)
