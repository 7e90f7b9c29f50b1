"""Hostile findings 14-3, 14-4 and 14-5 through the whole HTTP stack on a real project.

* 14-3: ``/score`` without ``as_of`` (documented default: now) answered 400 "Expected
  as_of to be a whole second"; ``as_of`` 9999-12-31 / 0001-01-01 and ``birth_year`` =
  10**30 answered 500. Now: now to the second; out-of-range dates and numbers are 400s.
* 14-4: ``/score`` returned every feature to any role, whatever ``categories`` asked.
  Now only features feeding the tags the role may see and the request selected.
* 14-5: every validation 400 was logged at ERROR with a traceback quoting the input
  (customer ids). Now one INFO line with a request id and field paths; a 500 keeps its
  stack but no exception text (:mod:`serving.logpolicy`).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

import serving.runtime
from tagsmith.app import build_runtime
from tests.hostile.service_fixture import Service

CUSTOMER = {"customer_id": "zz-new-1", "signup_at": "2024-01-01T00:00:00Z", "attributes": {}}
EVENTS = [{"occurred_at": "2024-06-01T00:00:00Z", "event_type": "purchase", "amount": 10.0}]
AS_OF = "2025-01-01T00:00:00Z"


def test_score_without_as_of_scores_now(service: Service) -> None:
    before = pd.Timestamp.now(tz="UTC").floor("s")
    r = service.post("/score", customer=CUSTOMER, events=EVENTS)
    assert r.status_code == 200, r.text
    stamp = pd.Timestamp(r.json()["as_of"])
    assert before <= stamp <= pd.Timestamp.now(tz="UTC")
    assert stamp == stamp.floor("s")


@pytest.mark.parametrize(
    "change",
    [
        {"as_of": "9999-12-31T00:00:00Z"},
        {"as_of": "0001-01-01T00:00:00Z"},
        {"as_of": "2999-01-01T00:00:00Z"},
        {"customer": {**CUSTOMER, "attributes": {"birth_year": 10**30}}},
        {"customer": {**CUSTOMER, "attributes": {"birth_year": -(10**30)}}},
        {"customer": {**CUSTOMER, "attributes": {"birth_year": 1e300}}},
        {"customer": {**CUSTOMER, "signup_at": "9999-12-31T00:00:00Z"}},
        {"events": [{**EVENTS[0], "amount": 1e308}]},
        {"events": [{**EVENTS[0], "amount": 9.3e14}]},
    ],
    ids=lambda c: re.sub(r"\W+", "_", str(c))[:60],
)
def test_extreme_dates_and_numbers_are_400(service: Service, change: dict[str, Any]) -> None:
    body = {"customer": CUSTOMER, "events": EVENTS, "as_of": AS_OF} | change
    r = service.post("/score", **body)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("The posted facts cannot be scored")


@pytest.mark.parametrize(
    "change",
    [
        {"customer": {**CUSTOMER, "signup_at": "0001-01-01T00:00:00Z"}},
        {"events": [{**EVENTS[0], "occurred_at": "9999-12-31T23:59:59Z"}]},
        {"events": [{**EVENTS[0], "occurred_at": "0001-01-01T00:00:00Z"}]},
        {"events": [{**EVENTS[0], "quantity": 1e308}]},
    ],
    ids=lambda c: re.sub(r"\W+", "_", str(c))[:60],
)
def test_other_extremes_are_never_5xx(service: Service, change: dict[str, Any]) -> None:
    body = {"customer": CUSTOMER, "events": EVENTS, "as_of": AS_OF} | change
    r = service.post("/score", **body)
    assert r.status_code < 500, r.text


def _feeds(service: Service, role: str, categories: list[str] | None) -> set[str]:
    """Features feeding the tags ``role`` may see (of those categories), models included."""
    rt = build_runtime(service.served.project)
    rt.start()
    try:
        cat = rt.access.governance.catalog()
        visible = rt.access.visible(role)
        if categories is not None:
            visible = frozenset(t for t in visible if cat[t].get("category") in categories)
        return set(rt.access.features(role, rt.model_inputs(rt.keeper.state), visible))
    finally:
        rt.stop()


@pytest.mark.parametrize(
    ("role", "categories"),
    [("service", None), ("marketing", ["lifecycle"]), ("executive", ["behaviour"])],
)
def test_score_features_follow_role_and_categories(
    service: Service, role: str, categories: list[str] | None
) -> None:
    body: dict[str, Any] = {"customer": CUSTOMER, "events": EVENTS, "as_of": AS_OF}
    if categories:
        body["categories"] = categories
    r = service.post("/score", role, **body)
    assert r.status_code == 200, r.text
    answer = r.json()
    returned = set(answer["features"]) - {"customer_id"}
    allowed = _feeds(service, role, categories)
    assert returned <= allowed, sorted(returned - allowed)
    assert returned, "no feature at all"
    if categories == ["lifecycle"]:
        # Demographics feed only demographic tags (and models outside lifecycle).
        assert not {"age", "gender", "region", "city"} & returned
    tag_categories = {t["tag_id"] for t in answer["tags"]}
    assert tag_categories  # something was scored


def _lines_after(service: Service, mark: int) -> str:
    return service.log.getvalue()[mark:]


def test_validation_400_is_one_info_line_with_a_request_id(service: Service) -> None:
    mark = len(service.log.getvalue())
    secret = "HOSTILE-ID-0001"
    r = service.client.post(
        "/tags",
        json={"customer_ids": [secret, ""], "unexpected": 1},
        headers={**service.headers("marketing"), "X-Request-ID": "rq-42"},
    )
    assert r.status_code == 400
    assert r.headers["x-request-id"] == "rq-42"
    bad_json = service.client.post(
        "/score",
        content=b'{"customer": {"customer_id": "HOSTILE-ID-0002"',
        headers=service.headers("marketing"),
    )
    assert bad_json.status_code == 400
    rid = bad_json.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", rid)
    logged = _lines_after(service, mark)
    assert secret not in logged
    assert "HOSTILE-ID-0002" not in logged
    assert "Traceback" not in logged
    assert "ERROR" not in logged
    assert (
        "request rq-42: /tags [POST] refused with 4xx (customer_ids.1: string_too_short" in logged
    )
    assert f"request {rid}: /score [POST] refused with 4xx" in logged


def test_500_keeps_its_stack_but_no_exception_text(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "HOSTILE-ID-" + "0003"  # not a literal in the raising line: the stack quotes it

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"customer {secret} broke it")

    monkeypatch.setattr(serving.runtime.ServingRuntime, "tags_json", boom)
    mark = len(service.log.getvalue())
    r = service.post("/tags", customer_ids=["HOSTILE-ID-0003"])
    assert r.status_code == 500
    logged = _lines_after(service, mark)
    assert "HOSTILE-ID-0003" not in logged
    assert "ERROR" in logged
    assert "failed with an unexpected error (500)" in logged
    assert "builtins.RuntimeError" in logged
    assert 'serving/service.py", line' in logged  # the stack is kept
