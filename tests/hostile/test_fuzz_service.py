"""Fuzz the tag service over its full OpenAPI, in-process, on a real project: no 5xx.

Schemathesis generates requests for every operation of ``/docs.json`` (``/tags``,
``/score``, ``/events``, ``/explain``, ``/admin/reload``, ``/catalog``, ``/models`` and
BentoML's probes) and sends them through the whole HTTP stack (``TestClient`` over the
ASGI app) to a runtime over a real project: real features, rules, champions, event
ingest. The key is ``admin``'s, which may post events and reload. A hypothesis test
adds ``/score`` bodies with extreme dates (years 1-9999) and numbers (up to 1e308,
integers past int64). Every answer must be below 500. Then the captured service log
(every record, every level, of this process) must hold no customer id and no API key.

Examples per operation: ``TAGSMITH_FUZZ_EXAMPLES`` (default 60 in the suite; the
issue's 2,000 per endpoint is the same test with ``TAGSMITH_FUZZ_EXAMPLES=2000``, see
README for the measured run).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.hostile.service_fixture import Service

EXAMPLES = int(os.environ.get("TAGSMITH_FUZZ_EXAMPLES", "60"))
# BentoML's Prometheus endpoint needs the multiprocess metrics folder a served worker
# sets up; in-process it does not answer. It takes no input, so there is nothing to fuzz.
SKIPPED = {"GET /metrics"}


def _settings(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.generate],
    )


def _fuzz(service: Service, operation: Any, headers: dict[str, str], counts: dict) -> None:
    """EXAMPLES generated requests of one operation; none may get a 5xx."""

    @given(case=operation.as_strategy())
    @_settings(EXAMPLES)
    def check(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
        response = service.client.request(**kwargs)
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        assert response.status_code < 500, (operation.label, response.status_code, response.text)

    check()


def test_full_openapi_never_answers_5xx(service: Service) -> None:
    # The schema through the running client: from_asgi would run the app's lifespan
    # again, and its shutdown drops the service instance the other tests use.
    schema = schemathesis.openapi.from_dict(service.client.get("/docs.json").json())
    headers = service.headers("admin")
    seen: dict[str, dict[int, int]] = {}
    began = time.perf_counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        if label in SKIPPED:
            continue
        counts = seen.setdefault(label, {})
        _fuzz(service, operation, headers, counts)
        if not any(ops in label for ops in ("GET",)):
            # Operations with a body: hypothesis found EXAMPLES distinct requests.
            assert sum(counts.values()) >= EXAMPLES * 0.9, (label, counts)
    elapsed = time.perf_counter() - began
    posts = {k for k in seen if k.startswith("POST")}
    assert posts == {
        "POST /tags",
        "POST /score",
        "POST /events",
        "POST /explain",
        "POST /admin/reload",
    }, sorted(seen)
    # Requests reached the real code, not only validation: some were accepted.
    for label in ("POST /tags", "POST /score", "POST /events", "POST /explain"):
        assert seen[label].get(200, 0) > 0, (label, seen[label])
    print(
        f"fuzz: {sum(sum(c.values()) for c in seen.values())} requests in {elapsed:.1f} s: {seen}"
    )


YEARS = st.integers(min_value=1, max_value=9999)
STAMPS = st.builds(
    lambda y, d, s: f"{y:04d}-{1 + d % 12:02d}-{1 + d % 28:02d}T00:00:{s:02d}Z",
    YEARS,
    st.integers(0, 400),
    st.integers(0, 59),
)
HUGE = st.one_of(
    st.floats(min_value=0, max_value=1e308, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=10**40),
)
ATTRIBUTES = st.fixed_dictionaries(
    {},
    optional={
        "birth_year": st.one_of(
            st.integers(-(10**40), 10**40), st.floats(allow_nan=False, allow_infinity=False)
        ),
        "gender": st.text(max_size=20),
        "city": st.text(max_size=20),
    },
)
EVENT = st.fixed_dictionaries(
    {"occurred_at": STAMPS, "event_type": st.sampled_from(["purchase", "refund", "browse", "x"])},
    optional={"amount": HUGE, "quantity": HUGE, "order_id": st.text(min_size=1, max_size=10)},
)


def test_score_with_extreme_dates_and_numbers_never_5xx(service: Service) -> None:
    statuses: dict[int, int] = {}

    @given(
        signup=STAMPS,
        as_of=st.one_of(st.none(), STAMPS),
        attributes=ATTRIBUTES,
        events=st.lists(EVENT, max_size=5),
    )
    @_settings(EXAMPLES)
    def check(signup: str, as_of: str | None, attributes: dict, events: list) -> None:
        body: dict[str, Any] = {
            "customer": {"customer_id": "fz-1", "signup_at": signup, "attributes": attributes},
            "events": events,
        }
        if as_of is not None:
            body["as_of"] = as_of
        r = service.post("/score", "marketing", **body)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (r.status_code, r.text, body)

    check()
    assert statuses.get(200, 0) + statuses.get(400, 0) == sum(statuses.values()), statuses


def _probe_every_endpoint(service: Service) -> None:
    """Traffic of every kind (valid, invalid, refused, unknown ids) with real ids."""
    ids = service.customer_ids[:5]
    for role in ("marketing", "service", "executive", "admin"):
        service.post("/tags", role, customer_ids=ids)
        service.post("/explain", role, customer_ids=ids)
        service.post("/tags", role, customer_ids=[*ids, ""])  # a validation 400
        service.post("/tags", role, customer_ids=ids, tags=["age_band"])  # maybe 403
    service.client.post("/tags", content=('{"customer_ids": ["' + ids[0]).encode())
    service.client.post("/tags", json={"customer_ids": ids})  # 401: no key
    service.client.post("/tags", json={"customer_ids": ids}, headers={"X-API-Key": ids[0]})
    event = {"event_id": "fz-e1", "customer_id": ids[0], "event_type": "browse"}
    service.post("/events", "ingest", events=[{**event, "occurred_at": "2025-01-02T00:00:00Z"}])
    service.post("/events", "ingest", events=[{**event, "occurred_at": "not a date"}])
    service.post("/events", "marketing", events=[event])  # 403
    service.post(
        "/score",
        customer={"customer_id": ids[1], "signup_at": "9999-01-01T00:00:00Z"},
        as_of="2025-01-01T00:00:00Z",
    )
    service.post("/score", customer={"customer_id": ids[2]})
    service.client.get("/catalog", headers=service.headers("service"))
    service.client.get("/models", headers=service.headers("marketing"))


def test_service_log_holds_no_customer_id_and_no_key(service: Service) -> None:
    _probe_every_endpoint(service)
    text = service.log.getvalue()
    assert "request " in text  # the log did capture the service's request lines
    words = set(re.findall(r"[A-Za-z0-9_.-]+", text))
    leaked_ids = sorted(set(service.customer_ids) & words)
    assert not leaked_ids, f"customer ids in the service log: {leaked_ids[:10]}"
    for role, key in service.keys.items():
        assert key not in text, f"the {role} API key is in the service log"
        assert key[:12] not in text, f"a prefix of the {role} API key is in the service log"
    for marker in ("fz-1", "fz-e1", "HOSTILE-ID-"):
        assert marker not in text, marker
