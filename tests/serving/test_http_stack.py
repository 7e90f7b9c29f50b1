"""The service's HTTP stack: uvicorn's C parser and event loop, not the pure-Python ones.

BentoML's worker builds ``uvicorn.Config`` without ``http`` or ``loop`` (both "auto"),
so uvicorn takes httptools and uvloop when they are installed and h11 and asyncio's
loop otherwise: ~0.4 ms less event-loop CPU per ``POST /score`` (docs/benchmarks.md,
fifteenth session). The pinned set must keep installing both.
"""

from __future__ import annotations

import uvicorn


def _auto_config() -> uvicorn.Config:
    # As _bentoml_impl.worker.service builds it: no http= or loop= argument.
    config = uvicorn.Config(app=lambda scope, receive, send: None, log_config=None)
    config.load()
    return config


def test_auto_http_protocol_is_httptools() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert _auto_config().http_protocol_class is HttpToolsProtocol


def test_auto_event_loop_is_uvloop() -> None:
    factory = _auto_config().get_loop_factory()
    assert factory is not None
    assert factory.__module__.split(".")[0] == "uvloop"
