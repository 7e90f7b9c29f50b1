from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.catalog import feature_catalog
from features.errors import FeaturesError, SpecError
from features.events import prepare_events
from features.schema import customers_frame, events_frame
from features.spec import FeatureSpec, default_spec
from tests.features.naive import naive_features

BASE = pd.Timestamp("2021-01-01", tz="UTC")
TYPES = ["purchase", "refund", "browse", "login", "complaint", "share"]
SPEC = default_spec()
HYPO = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def timestamps(draw: st.DrawFn, max_days: int = 500) -> pd.Timestamp:
    # Few distinct seconds and microseconds, so that ties and same-second events occur.
    day = draw(st.one_of(st.integers(0, 120), st.integers(0, max_days)))
    second = draw(st.sampled_from([0, 1, 3600, 43_200, 86_399]))
    micro = draw(st.sampled_from([0, 0, 7, 999_999]))
    return BASE + pd.Timedelta(days=day, seconds=second, microseconds=micro)


@st.composite
def facts(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    n_customers = draw(st.integers(1, 4))
    ids = [f"c{i}" for i in range(n_customers)]
    customers = [
        {
            "customer_id": cid,
            "signup_at": BASE + pd.Timedelta(seconds=draw(st.integers(0, 100 * 86_400))),
            "birth_year": draw(st.one_of(st.none(), st.integers(1940, 2015))),
            "region": draw(st.sampled_from([None, "north", "south"])),
        }
        for cid in ids
    ]
    events: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 60))):
        etype = draw(st.sampled_from(["purchase", "purchase", *TYPES]))
        needs_amount = etype in ("purchase", "refund")
        events.append(
            {
                "customer_id": draw(st.sampled_from([*ids, "ghost"])),
                "occurred_at": draw(timestamps()),
                "event_type": etype,
                "amount": draw(st.integers(0, 50_000)) / 100 if needs_amount else None,
                "category": draw(st.sampled_from([None, "a", "b", "c"])),
                "order_id": draw(st.sampled_from([None, "o1", "o2", "o3"])),
            }
        )
    as_of = BASE + pd.Timedelta(
        days=draw(st.one_of(st.integers(0, 130), st.integers(0, 520))),
        seconds=draw(st.sampled_from([0, 1, 43_200])),
    )
    if events and draw(st.booleans()):
        # Cut exactly at an event: it must be left out.
        as_of = pd.Timestamp(draw(st.sampled_from(events))["occurred_at"]).floor("s")
    return (*_frames(customers, events), as_of)


def _frames(
    customers: list[dict[str, Any]], events: list[dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    cust = customers_frame(customers)
    if events:
        ev = events_frame(events)
    else:
        ev = events_frame(pd.DataFrame(columns=["customer_id", "occurred_at", "event_type"]))
    return cust, ev


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal frames: float32 features within a few float32 ulps (both sides round
    float64 arithmetic done in a different order), everything else to 1e-9."""
    pd.testing.assert_series_equal(got.dtypes, expected.dtypes)
    narrow = [c for c in got.columns if got[c].dtype == np.float32]
    pd.testing.assert_frame_equal(
        got.drop(columns=narrow),
        expected.drop(columns=narrow),
        check_exact=False,
        rtol=1e-9,
        atol=1e-9,
    )
    for column in narrow:
        np.testing.assert_allclose(
            got[column].to_numpy(dtype=np.float64),
            expected[column].to_numpy(dtype=np.float64),
            rtol=5e-7,
            atol=1e-9,
            err_msg=column,
        )


@HYPO
@given(facts())
def test_matches_naive_loop(data: tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]) -> None:
    customers, events, as_of = data
    got = build_features(customers, events, as_of=as_of)
    _assert_same(got, naive_features(customers, events, as_of, SPEC))


@HYPO
@given(facts(), st.data())
def test_events_at_or_after_as_of_never_change_a_row(
    data: tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp], more: st.DataObject
) -> None:
    customers, events, as_of = data
    before = build_features(customers, events, as_of=as_of)
    changed = events.copy()
    late = changed["occurred_at"] >= as_of
    # Change what is already late, and add new late events.
    changed.loc[late, "event_type"] = "purchase"
    changed.loc[late, "amount"] = 1234.5
    extra = [
        {
            "customer_id": more.draw(st.sampled_from(list(customers["customer_id"]))),
            "occurred_at": as_of + pd.Timedelta(seconds=more.draw(st.integers(0, 400 * 86_400))),
            "event_type": more.draw(st.sampled_from(TYPES)),
            "amount": 5.0,
            "category": "z",
        }
        for _ in range(more.draw(st.integers(1, 10)))
    ]
    changed = pd.concat([changed, events_frame(extra)], ignore_index=True)
    pd.testing.assert_frame_equal(build_features(customers, changed, as_of=as_of), before)


@HYPO
@given(facts(), st.randoms(use_true_random=False))
def test_shuffling_input_rows_never_changes_output(
    data: tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp], rnd: Any
) -> None:
    customers, events, as_of = data
    before = build_features(customers, events, as_of=as_of)
    seed = rnd.randint(0, 2**31)
    shuffled_c = customers.sample(frac=1, random_state=seed).reset_index(drop=True)
    shuffled_e = events.sample(frac=1, random_state=seed + 1).reset_index(drop=True)
    pd.testing.assert_frame_equal(build_features(shuffled_c, shuffled_e, as_of=as_of), before)
    # Time-ordered and customer-then-time-ordered logs take the packed-sort fast path.
    for order in (["occurred_at"], ["customer_id", "occurred_at"]):
        ordered = shuffled_e.sort_values(order, kind="stable", ignore_index=True)
        pd.testing.assert_frame_equal(build_features(customers, ordered, as_of=as_of), before)


@HYPO
@given(facts(), st.lists(timestamps(max_days=520), min_size=1, max_size=4))
def test_multi_date_output_equals_single_date_output(
    data: tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp], cutoffs: list[pd.Timestamp]
) -> None:
    customers, events, _ = data
    cutoffs = [c.floor("s") for c in cutoffs]
    long = build_features(customers, events, as_of=cutoffs)
    assert list(long.columns[:2]) == ["customer_id", "as_of"]
    for cutoff in sorted(set(cutoffs)):
        part = long[long["as_of"] == cutoff].drop(columns="as_of").reset_index(drop=True)
        single = build_features(customers, events, as_of=cutoff)
        pd.testing.assert_frame_equal(part, single)
    assert len(long) == sum(
        len(build_features(customers, events, as_of=c)) for c in sorted(set(cutoffs))
    )


def test_hand_checked_expected_features(data_dir: Path) -> None:
    customers = customers_frame(pd.read_csv(data_dir / "features_customers.csv"))
    events = events_frame(
        pd.read_csv(data_dir / "features_events.csv", dtype={"order_id": "string"})
    )
    expected = pd.read_csv(data_dir / "expected_features.csv", comment="#")
    got = build_features(customers, events, as_of="2021-04-01")
    assert list(got["customer_id"]) == list(expected["customer_id"])
    for column in expected.columns[1:]:
        want, have = expected[column], got[column]
        if pd.api.types.is_numeric_dtype(want) and not pd.api.types.is_bool_dtype(want):
            np.testing.assert_allclose(
                have.to_numpy(dtype=float),
                want.to_numpy(dtype=float),
                rtol=1e-5,
                atol=1e-6,
                err_msg=column,
            )
        else:
            assert [None if pd.isna(v) else str(v) for v in have] == [
                None if pd.isna(v) else str(v) for v in want
            ], column


@pytest.mark.parametrize("many", [False, True])
def test_output_columns_follow_the_catalogue_with_its_dtypes(many: bool) -> None:
    customers, events = _frames(
        [
            {"customer_id": "a", "signup_at": "2021-01-01", "birth_year": 1980},
            {"customer_id": "b", "signup_at": "2021-02-15"},
        ],
        [
            {
                "customer_id": "a",
                "occurred_at": "2021-02-01",
                "event_type": "purchase",
                "amount": 3,
            },
            {"customer_id": "b", "occurred_at": "2021-02-20", "event_type": "browse"},
        ],
    )
    as_of: Any = ["2021-02-10", "2021-03-01"] if many else "2021-03-01"
    got = build_features(customers, events, as_of=as_of)
    catalogue = feature_catalog(SPEC)
    keys = ["customer_id", "as_of"] if many else ["customer_id"]
    assert list(got.columns) == keys + [f.name for f in catalogue]
    declared = {f.name: f.dtype for f in catalogue}
    assert declared == {c: str(got[c].dtype) for c in got.columns[len(keys) :]}


def test_catalogue_dtypes_follow_the_dtype_policy() -> None:
    for info in feature_catalog(SPEC):
        if info.unit == "currency":
            assert info.dtype == "float64", info.name  # cents and money thresholds exact
        elif info.unit == "flag":
            assert info.dtype == "bool", info.name
        elif info.name == "top_category":
            assert info.dtype == "string"  # categories seen in events would leak the future
        elif info.family == "attributes" and info.unit in ("category", "band"):
            assert info.dtype == "category", info.name
        elif ("_count_" in info.name and "trend" not in info.name) or info.name.endswith(
            ("_count", "frequency_orders", "frequency_days", "distinct_categories")
        ):
            assert info.dtype == "int32", info.name
        else:
            assert info.dtype == "float32", info.name


def test_narrowing_refuses_integers_that_do_not_fit() -> None:
    from features.cutoffs import _fill

    out = np.zeros(2, dtype=np.int32)
    _fill(out, 0, 2, np.array([1, 2**31 - 1]), "fits")
    assert out.tolist() == [1, 2**31 - 1]
    with pytest.raises(FeaturesError, match="'big' must fit in int32"):
        _fill(out, 0, 2, np.array([0, 2**31]), "big")
    with pytest.raises(FeaturesError, match="'real' must be computed as int32"):
        _fill(out, 0, 2, np.array([0.5, 1.0]), "real")


def test_never_purchased_has_null_recency_and_zero_counts() -> None:
    customers, events = _frames(
        [{"customer_id": "a", "signup_at": "2021-01-01"}],
        [{"customer_id": "a", "occurred_at": "2021-02-01", "event_type": "browse"}],
    )
    row = build_features(customers, events, as_of="2021-03-01").iloc[0]
    assert row["never_purchased"]
    assert pd.isna(row["recency_days"])
    assert row["frequency_orders"] == 0
    assert row["monetary_total"] == 0.0
    assert pd.isna(row["monetary_mean"])
    assert row["browse_count_30d"] == 1


def test_customers_signing_up_at_or_after_as_of_have_no_row() -> None:
    customers, events = _frames(
        [
            {"customer_id": "early", "signup_at": "2021-01-01"},
            {"customer_id": "exact", "signup_at": "2021-03-01"},
        ],
        [],
    )
    got = build_features(customers, events, as_of="2021-03-01")
    assert list(got["customer_id"]) == ["early"]
    assert build_features(customers, events, as_of="2020-01-01").empty


def test_a_core_spec_builds_only_its_families() -> None:
    spec = FeatureSpec(families=["rfm", "windowed"], windows=[30, 90], event_types=["purchase"])
    customers, events = _frames(
        [{"customer_id": "a", "signup_at": "2021-01-01"}],
        [{"customer_id": "a", "occurred_at": "2021-02-01", "event_type": "purchase", "amount": 3}],
    )
    got = build_features(customers, events, as_of="2021-03-01", spec=spec)
    assert "purchase_count_30d" in got.columns
    assert "purchase_amount_90d" in got.columns
    assert "loyalty_score" not in got.columns
    assert "browse_count_30d" not in got.columns


def test_prepared_events_serve_repeated_calls_identically() -> None:
    customers, events = _frames(
        [{"customer_id": "a", "signup_at": "2021-01-01"}],
        [
            {
                "customer_id": "a",
                "occurred_at": "2021-02-01",
                "event_type": "purchase",
                "amount": 3,
                "category": "x",
            },
        ],
    )
    prepared = prepare_events(customers, events)
    first = prepared.build_features("2021-03-01")
    # Per-call structures are dropped after their last reader, and built again.
    assert prepared._days is None
    assert not prepared._groups
    assert prepared.typed("purchase").amount_cs is None
    pd.testing.assert_frame_equal(prepared.build_features("2021-03-01", release=False), first)
    assert prepared._days is not None  # kept for the next call
    pd.testing.assert_frame_equal(prepared.build_features("2021-03-01"), first)
    pd.testing.assert_frame_equal(
        prepared.build_features(["2021-02-15", "2021-03-01"]).iloc[1:].reset_index(drop=True),
        pd.concat(
            [
                first[["customer_id"]],
                pd.DataFrame({"as_of": [pd.Timestamp("2021-03-01", tz="UTC")]}),
                first.iloc[:, 1:],
            ],
            axis=1,
        ),
    )


def test_spec_attribute_missing_from_customers_is_named() -> None:
    customers = customers_frame([{"customer_id": "a", "signup_at": "2021-01-01"}])
    customers = customers.drop(columns=["region"])
    events = events_frame(pd.DataFrame(columns=["customer_id", "occurred_at", "event_type"]))
    with pytest.raises(SpecError, match="'region'"):
        build_features(customers, events, as_of="2021-03-01")


@pytest.mark.parametrize("bad", ["not a date", "2021-03-01T00:00:00.5"])
def test_bad_as_of_is_refused(bad: str) -> None:
    customers, events = _frames([{"customer_id": "a", "signup_at": "2021-01-01"}], [])
    with pytest.raises(FeaturesError, match="as_of"):
        build_features(customers, events, as_of=bad)


@pytest.mark.parametrize("grouped", [True, False])
def test_customer_coding_matches_a_plain_lookup(grouped: bool) -> None:
    import pyarrow as pa

    from features.coding import customer_runs

    rng = np.random.default_rng(3)
    n = 1_100_000  # above the threshold where lookups are split across threads
    known = np.array([f"k{i:05d}" for i in range(5_000)], dtype=object)
    picks = rng.integers(0, 5_200, n)  # some ids are unknown
    picks = np.sort(picks) if grouped else picks
    values = np.array([f"k{i:05d}" for i in range(5_200)], dtype=object)[picks]
    # Chunk edges inside runs and at run edges.
    edges = [0, 1, 2, 1000, n // 2, int(np.searchsorted(picks, 3000)) if grouped else 7, n]
    edges = sorted(set(edges))
    chunks = [pa.array(values[a:b]) for a, b in itertools.pairwise(edges)]
    heads, head_codes = customer_runs(pa.chunked_array(chunks), pa.array(known))
    got = np.repeat(head_codes, np.diff(np.append(heads, n)))
    expected = pd.Index(known).get_indexer(values)
    np.testing.assert_array_equal(got, expected)
    if grouped:  # one lookup per run of equal ids
        assert len(heads) == len(np.unique(picks))


def test_string_hashes_are_equal_for_equal_text_in_any_layout() -> None:
    import pyarrow as pa

    from features.coding import string_hashes

    texts = ["", "a", "ab", "abcdefgh", "abcdefghi", "ordér-ñ-0001", "x" * 40, None, "a"]
    plain = pa.array(texts, type=pa.string())
    large = pa.array(["pad", *texts], type=pa.large_string()).slice(1)  # non-zero offset
    h1, n1 = string_hashes(pa.chunked_array([plain]))
    h2, n2 = string_hashes(pa.chunked_array([large.slice(0, 4), large.slice(4)]))
    np.testing.assert_array_equal(n1, [t is None for t in texts])
    np.testing.assert_array_equal(n1, n2)
    np.testing.assert_array_equal(h1[~n1], h2[~n2])
    assert h1[1] == h1[8]  # equal text
    assert len(set(h1[~n1].tolist())) == len({t for t in texts if t is not None})


@pytest.mark.parametrize("collide", [False, True])
def test_new_orders_match_a_set_per_customer_even_when_hashes_collide(collide: bool) -> None:
    import pyarrow as pa

    from features.coding import first_of_order, string_hashes

    rng = np.random.default_rng(5)
    n = 3_000
    code = np.sort(rng.integers(0, 200, n))
    ids = np.array([None, "o1", "o2", "o3", "o10", "o11"], dtype=object)[rng.integers(0, 6, n)]
    text = pa.chunked_array([pa.array(ids.tolist(), type=pa.large_string())])
    hashes, nulls = string_hashes(text)
    if collide:  # every id hashes the same: the text must settle every equality
        hashes = np.zeros_like(hashes)
    got = first_of_order(code, hashes, nulls, lambda at: text.take(pa.array(at)))
    seen: set[tuple[int, str]] = set()
    expected = []
    for c, oid in zip(code.tolist(), ids.tolist(), strict=True):
        expected.append(oid is None or (c, oid) not in seen)
        if oid is not None:
            seen.add((c, oid))
    np.testing.assert_array_equal(got, expected)


def test_engagement_features_by_hand() -> None:
    # Signed up 100 days before as_of; browses 50, 10 and 2 days before it; one purchase
    # 40 days before, refunded 39 days before; a complaint 45 days before (before the
    # purchase, so it does not count as "since the last purchase").
    as_of = pd.Timestamp("2021-05-01", tz="UTC")
    ago = lambda d: as_of - pd.Timedelta(days=d)  # noqa: E731
    customers, events = _frames(
        [{"customer_id": "a", "signup_at": ago(100)}],
        [
            *(
                {"customer_id": "a", "occurred_at": ago(d), "event_type": "browse"}
                for d in (50, 10, 2)
            ),
            {
                "customer_id": "a",
                "occurred_at": ago(40),
                "event_type": "purchase",
                "amount": 9.0,
                "order_id": "o1",
            },
            {
                "customer_id": "a",
                "occurred_at": ago(39),
                "event_type": "refund",
                "amount": 9.0,
                "order_id": "o1",
            },
            {"customer_id": "a", "occurred_at": ago(45), "event_type": "complaint"},
        ],
    )
    row = build_features(customers, events, as_of=as_of).iloc[0]
    assert row["browse_recency_days"] == pytest.approx(2.0)
    assert row["browse_per_day"] == pytest.approx(0.03)
    assert row["browse_silence"] == pytest.approx(0.06)
    assert row["browse_recent_ratio"] == pytest.approx(2 / (0.03 * 14))
    assert pd.isna(row["login_recency_days"])
    assert row["login_per_day"] == 0.0
    assert pd.isna(row["login_recent_ratio"])
    decayed = np.exp(-50 / 7) + np.exp(-10 / 7) + np.exp(-2 / 7)
    assert row["engagement_decayed_7d"] == pytest.approx(decayed)
    assert row["engagement_decayed_7d_ratio"] == pytest.approx(decayed / (0.03 * 7))
    assert row["purchase_decayed_30d"] == pytest.approx(np.exp(-40 / 30))
    assert row["purchase_per_day"] == pytest.approx(1 / 40)
    assert row["purchase_silence"] == pytest.approx(1.0)
    assert bool(row["refunded_since_last_purchase"])
    assert not bool(row["complained_since_last_purchase"])


def test_decayed_sums_do_not_depend_on_the_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    import features.families.engagement as engagement

    rng = np.random.default_rng(11)
    ids = [f"c{i:02d}" for i in range(40)]
    customers, events = _frames(
        [{"customer_id": c, "signup_at": BASE} for c in ids],
        [
            {
                "customer_id": ids[int(rng.integers(0, 40))],
                "occurred_at": BASE + pd.Timedelta(seconds=int(rng.integers(0, 200 * 86_400))),
                "event_type": str(rng.choice(["browse", "login", "purchase"])),
                "amount": 5.0,
            }
            for _ in range(600)
        ],
    )
    as_of = [BASE + pd.Timedelta(days=d) for d in (30, 120, 250)]
    whole = build_features(customers, events, as_of=as_of)
    monkeypatch.setattr(engagement, "_BLOCK_EVENTS", 7)
    pd.testing.assert_frame_equal(build_features(customers, events, as_of=as_of), whole)


@pytest.mark.parametrize("micros", [0, 7])
def test_prepared_events_keep_only_the_search_key_when_they_can(micros: int) -> None:
    customers, events = _frames(
        [{"customer_id": c, "signup_at": BASE} for c in ("a", "b")],
        [
            {
                "customer_id": c,
                "occurred_at": BASE + pd.Timedelta(days=d, microseconds=micros * (d == 3)),
                "event_type": t,
                "amount": 2.5 if t == "purchase" else None,
                "category": "x",
            }
            for c in ("a", "b")
            for d, t in ((1, "browse"), (2, "purchase"), (3, "browse"), (4, "purchase"))
        ],
    )
    events = events.sort_values(["customer_id", "occurred_at"], ignore_index=True)
    prepared = prepare_events(customers, events)
    browse = prepared.typed("browse")
    # Whole-second times are read off the key; rows are found again from the types.
    assert (browse._t_us is None) == (micros == 0)
    assert browse._rows is None
    got = prepared.build_features(BASE + pd.Timedelta(days=10))
    assert got["browse_recency_days"].tolist() == pytest.approx([7 - micros * 1e-6 / 86_400] * 2)
    assert browse.rows.tolist() == [0, 2, 4, 6]
    micros_of = [ts.value // 1000 for ts in events["occurred_at"]]
    assert browse.t_us.tolist() == [micros_of[i] for i in (0, 2, 4, 6)]
