"""A consumer process for the kill -9 tests: ``python -m tests.streaming.consumer_proc ROOT URL``.

Runs the real consumer (``streaming.consumer.consume``) with a real tagger over the fact
and tag stores under ROOT (made by the test), until killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pandas as pd

from features.live import LiveEventLog
from features.schema import FactsConfig
from features.spec import default_spec
from features.store import FactStore
from streaming.config import StreamingConfig
from streaming.consumer import consume
from streaming.tagger import LiveTagger
from tags.catalogue import LIBRARY_DIR, Catalogue
from tags.store import TagStore

NOW = pd.Timestamp("2024-10-02 00:00:00", tz="UTC")


def tagger_at(root: Path) -> LiveTagger:
    """The tagger of the stores under ``root`` (clock pinned, no champion models)."""
    return LiveTagger(
        facts=FactStore(root / "facts"),
        live=LiveEventLog(root / "facts" / "live"),
        tag_store=TagStore(root / "tags.duckdb"),
        catalogue=Catalogue.load(LIBRARY_DIR),
        spec=default_spec(),
        facts_config=FactsConfig(),
        quarantine_dir=root / "quarantine",
        clock=lambda: NOW,
    )


def main() -> None:
    root, url = Path(sys.argv[1]), sys.argv[2]
    tagger = tagger_at(root)
    tagger.warm()
    cfg = StreamingConfig(batch_size=25, batch_wait_s=0.5, ack_wait_s=1.0)
    print("consuming", flush=True)
    asyncio.run(consume(tagger, cfg, url=url, subject=cfg.subject, stop=asyncio.Event()))


if __name__ == "__main__":
    main()
