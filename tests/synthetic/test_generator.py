from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from features import FactsConfig, FeaturesError, check_customers, check_events
from features.schema import default_attributes
from synthetic import (
    SyntheticConfig,
    SyntheticData,
    generate,
    oracle_churn_probability,
    oracle_expected_value,
    seasonality,
    write_synthetic,
)
from synthetic.generator import _Clock, _duplicate_rows
from tagsmith.cli import main

START, END = "2023-01-01", "2024-12-31"


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return generate(4000, start=START, end=END, seed=11)


def _by_type(events: pd.DataFrame, event_type: str) -> pd.DataFrame:
    return events[events["event_type"] == event_type]


def _op_time(times: pd.Series) -> np.ndarray:
    """Operational time S(t) in days since START, from the public seasonality function."""
    hours = pd.date_range(START, periods=(731 + 1) * 24, freq="h", tz="UTC")
    cum = np.concatenate([[0.0], np.cumsum(seasonality(hours) / 24.0)])
    t = (pd.to_datetime(times, utc=True) - pd.Timestamp(START, tz="UTC")) / pd.Timedelta(days=1)
    return np.interp(t.to_numpy(dtype=np.float64), np.arange(cum.size) / 24.0, cum)


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frames_and_bytes(tmp_path: Path) -> None:
    first = generate(600, start=START, end=END, seed=5)
    second = generate(600, start=START, end=END, seed=5)
    for name in ("customers", "events", "truth"):
        assert_frame_equal(getattr(first, name), getattr(second, name))
    for file_format in ("csv", "parquet"):
        a = write_synthetic(first, tmp_path / f"a-{file_format}", file_format=file_format)
        b = write_synthetic(second, tmp_path / f"b-{file_format}", file_format=file_format)
        for name in ("customers", "events", "truth"):
            assert a[name].read_bytes() == b[name].read_bytes(), (file_format, name)


def test_different_seed_gives_different_data() -> None:
    first = generate(300, start=START, end=END, seed=1)
    second = generate(300, start=START, end=END, seed=2)
    assert not first.customers["signup_at"].equals(second.customers["signup_at"])
    assert len(first.events) != len(second.events) or not first.events.equals(second.events)


# ---------------------------------------------------------------- contract


def test_output_satisfies_the_fact_contract(data: SyntheticData) -> None:
    check_customers(data.customers, FactsConfig())
    check_events(data.events)
    for spec in default_attributes():
        column = data.customers[spec.name]
        assert column.notna().all(), spec.name
        if spec.allowed is not None:
            assert set(column.unique()) <= set(spec.allowed), spec.name
        if spec.min is not None:
            assert column.min() >= spec.min
            assert column.max() <= spec.max
    assert data.customers["customer_id"].tolist() == data.truth["customer_id"].tolist()
    events = data.events
    assert events["occurred_at"].is_monotonic_increasing
    assert set(events["event_type"].unique()) == {
        "purchase",
        "refund",
        "browse",
        "login",
        "complaint",
    }
    money = events["event_type"].isin(["purchase", "refund"])
    assert events.loc[money, "amount"].gt(0).all()
    assert events.loc[~money, "amount"].isna().all()
    purchases = _by_type(events, "purchase")
    assert purchases[["category", "product_id", "order_id"]].notna().all().all()
    assert purchases["quantity"].ge(1).all()
    assert purchases["order_id"].is_unique
    assert not events.duplicated().any()


def test_exact_repeats_of_browses_and_logins_are_dropped() -> None:
    # rows: browse, its repeat, same second other product, login, its repeat, purchase twice
    seconds = np.array([10, 10, 10, 10, 10, 10, 10, 99], dtype=np.int64)
    cust = np.array([1, 1, 1, 1, 1, 1, 1, 1], dtype=np.int32)
    etype = np.array([1, 1, 1, 0, 0, 2, 2, 1], dtype=np.int8)
    product = np.array([5, 5, 6, -1, -1, 5, 5, 5], dtype=np.int32)
    assert _duplicate_rows(seconds, cust, etype, product).tolist() == [1, 4]
    other_customer = cust.copy()
    other_customer[1] = 2
    assert _duplicate_rows(seconds, other_customer, etype, product).tolist() == [4]


def test_periods_are_within_start_and_end(data: SyntheticData) -> None:
    start, end = pd.Timestamp(START, tz="UTC"), pd.Timestamp(END, tz="UTC")
    assert data.customers["signup_at"].ge(start).all()
    assert data.customers["signup_at"].lt(end + pd.Timedelta(days=1)).all()
    assert data.events["occurred_at"].lt(end + pd.Timedelta(days=1)).all()
    # Customers arrive throughout the period, more of them later (growth).
    signup = data.customers["signup_at"]
    quarter = (signup.dt.year * 10 + signup.dt.quarter).value_counts().sort_index()
    assert len(quarter) == 8
    assert quarter.iloc[-4:].sum() > quarter.iloc[:4].sum()


# ---------------------------------------------------------------- sanity


def test_no_events_before_signup_or_after_dropout(data: SyntheticData) -> None:
    merged = data.events.merge(data.truth[["customer_id", "signup_at", "dropout_at"]])
    assert merged["occurred_at"].ge(merged["signup_at"]).all()
    dropped = merged["dropout_at"].notna()
    assert merged.loc[dropped, "occurred_at"].lt(merged.loc[dropped, "dropout_at"]).all()
    # Each customer logs in at signup.
    first = data.events.groupby("customer_id")["occurred_at"].min()
    assert (first == data.truth.set_index("customer_id")["signup_at"]).all()


def test_never_buyers_have_no_purchases_but_do_browse(data: SyntheticData) -> None:
    never = set(data.truth.loc[data.truth["never_buys"], "customer_id"])
    assert 0.1 < len(never) / len(data.truth) < 0.4
    buyers = set(_by_type(data.events, "purchase")["customer_id"])
    assert not never & buyers
    browsers = set(_by_type(data.events, "browse")["customer_id"])
    assert len(never & browsers) > 0.3 * len(never)


def test_leaving_precedes_dropout(data: SyntheticData) -> None:
    truth = data.truth
    dropped = truth["dropout_at"].notna()
    assert truth.loc[dropped, "leaving_at"].notna().all()
    assert (truth.loc[dropped, "leaving_at"] < truth.loc[dropped, "dropout_at"]).all()
    assert 0.2 < dropped.mean() < 0.7


def _purchase_counts_vs_expected(data: SyntheticData, state: str) -> pd.DataFrame:
    """Per buyer: purchases observed in the active (or leaving) period and the expected count."""
    truth = data.truth[~data.truth["never_buys"]].set_index("customer_id")
    end = pd.Timestamp(END, tz="UTC") + pd.Timedelta(days=1)
    leaving = truth["leaving_at"].fillna(end).clip(upper=end)
    if state == "active":
        begin, finish, factor = truth["signup_at"], leaving, 1.0
    else:
        begin, finish = leaving, truth["dropout_at"].fillna(end).clip(upper=end)
        factor = truth["leaving_purchase_factor"]
    purchases = _by_type(data.events, "purchase").merge(
        pd.DataFrame({"begin": begin, "finish": finish}), left_on="customer_id", right_index=True
    )
    # A bad purchase that starts the leaving state happens at leaving_at, at the active rate.
    if state == "active":
        inside = purchases["occurred_at"].ge(purchases["begin"]) & purchases["occurred_at"].le(
            purchases["finish"]
        )
    else:
        inside = purchases["occurred_at"].gt(purchases["begin"]) & purchases["occurred_at"].lt(
            purchases["finish"]
        )
    observed = purchases[inside].groupby("customer_id").size().reindex(truth.index, fill_value=0)
    exposure = _op_time(finish) - _op_time(begin)
    expected = truth["purchase_rate"] * factor * exposure
    return pd.DataFrame(
        {"observed": observed, "expected": expected, "rate": truth["purchase_rate"]}
    )


def test_purchase_rates_match_truth_in_active_periods(data: SyntheticData) -> None:
    counts = _purchase_counts_vs_expected(data, "active")
    total = counts["observed"].sum()
    assert total > 5000
    assert counts["observed"].sum() / counts["expected"].sum() == pytest.approx(1.0, abs=0.04)
    # Heterogeneity is real: each rate tercile matches its own expectation.
    terciles = pd.qcut(counts["rate"], 3, labels=False)
    by_tercile = counts.groupby(terciles)[["observed", "expected"]].sum()
    ratios = by_tercile["observed"] / by_tercile["expected"]
    assert ratios.between(0.9, 1.1).all(), ratios
    assert by_tercile["observed"].iloc[2] > 5 * by_tercile["observed"].iloc[0]


def test_purchase_rates_slow_down_while_leaving(data: SyntheticData) -> None:
    counts = _purchase_counts_vs_expected(data, "leaving")
    assert counts["observed"].sum() > 300
    assert counts["observed"].sum() / counts["expected"].sum() == pytest.approx(1.0, abs=0.12)


def test_refunds_reference_earlier_purchases_of_the_same_customer(data: SyntheticData) -> None:
    purchases = _by_type(data.events, "purchase").set_index("order_id")
    refunds = _by_type(data.events, "refund")
    assert len(refunds) > 100
    assert refunds["order_id"].is_unique
    matched = refunds.merge(
        purchases, left_on="order_id", right_index=True, how="left", suffixes=("", "_purchase")
    )
    assert matched["customer_id_purchase"].notna().all()
    assert (matched["customer_id"] == matched["customer_id_purchase"]).all()
    assert (matched["occurred_at"] > matched["occurred_at_purchase"]).all()
    assert (matched["amount"] <= matched["amount_purchase"]).all()
    assert (matched["product_id"] == matched["product_id_purchase"]).all()
    complaints = _by_type(data.events, "complaint").merge(
        purchases, left_on="order_id", right_index=True, suffixes=("", "_purchase")
    )
    assert (complaints["customer_id"] == complaints["customer_id_purchase"]).all()
    assert (complaints["occurred_at"] > complaints["occurred_at_purchase"]).all()


def test_spend_matches_truth_and_attributes_shift_it(data: SyntheticData) -> None:
    purchases = _by_type(data.events, "purchase")
    mean_spend = purchases.groupby("customer_id")["amount"].mean()
    truth = data.truth.set_index("customer_id").loc[mean_spend.index]
    counts = purchases.groupby("customer_id").size()
    heavy = counts >= 5
    # Gamma-Gamma: the per-customer average tracks the latent mean spend.
    corr = np.corrcoef(np.log(mean_spend[heavy]), np.log(truth.loc[heavy, "spend_mean"]))[0, 1]
    assert corr > 0.6
    assert purchases["amount"].sum() / (truth["spend_mean"] * counts).sum() == pytest.approx(
        1.0, abs=0.08
    )
    attrs = data.customers.set_index("customer_id").join(
        data.truth.drop(columns="signup_at").set_index("customer_id")
    )
    buyers = attrs[~attrs["never_buys"]]
    by_occupation = buyers.groupby("occupation")["spend_mean"].median()
    assert by_occupation["manager"] > by_occupation["student"] * 1.5
    by_channel = buyers.groupby("channel")["purchase_rate"].mean()
    assert by_channel["app"] > by_channel["partner"]


def test_browsing_fades_before_dropout(data: SyntheticData) -> None:
    truth = data.truth[data.truth["dropout_at"].notna()].set_index("customer_id")
    # Customers who were leaving for at least four weeks: compare their last two weeks
    # with their active period.
    truth = truth[truth["dropout_at"] - truth["leaving_at"] >= pd.Timedelta(days=28)]
    assert len(truth) > 100
    browses = _by_type(data.events, "browse").merge(
        truth[["signup_at", "leaving_at", "dropout_at"]], left_on="customer_id", right_index=True
    )
    last_two_weeks = browses["occurred_at"] >= browses["dropout_at"] - pd.Timedelta(days=14)
    active = browses["occurred_at"] <= browses["leaving_at"]
    active_days = ((truth["leaving_at"] - truth["signup_at"]) / pd.Timedelta(days=1)).sum()
    active_rate = active.sum() / active_days
    final_rate = last_two_weeks.sum() / (14 * len(truth))
    assert final_rate < 0.5 * active_rate


def test_complaints_raise_dropout(data: SyntheticData) -> None:
    complained = set(_by_type(data.events, "complaint")["customer_id"])
    buyers = data.truth[~data.truth["never_buys"]]
    has = buyers["customer_id"].isin(complained)
    assert has.sum() > 30
    dropped = buyers["dropout_at"].notna()
    assert dropped[has].mean() > dropped[~has].mean() + 0.1


def test_seasonality_shows_in_purchases(data: SyntheticData) -> None:
    purchases = _by_type(data.events, "purchase")
    local = purchases["occurred_at"] + pd.Timedelta(hours=SyntheticConfig().utc_offset_hours)
    per_day = local.dt.strftime("%m-%d").value_counts()
    assert per_day["11-11"] > 2 * per_day.median()
    hours = local.dt.hour.value_counts()
    assert hours.loc[[19, 20, 21]].sum() > 4 * hours.loc[[3, 4, 5]].sum()
    weekday = local.dt.day_of_week.value_counts()
    assert weekday.loc[5] > weekday.loc[1]  # Saturday busier than Tuesday


def test_clock_inverse_matches_np_interp() -> None:
    clock = _Clock.build(pd.Timestamp("2024-01-01", tz="UTC"), 90, SyntheticConfig())
    u = np.random.default_rng(0).random(50_000) * clock.s_grid[-1] * 1.02
    u[:3] = [0.0, clock.s_grid[5], clock.s_grid[-1]]  # grid points and the very end
    expected = np.where(u >= clock.s_grid[-1], np.inf, np.interp(u, clock.s_grid, clock.t_grid))
    got = clock.inv(u)
    assert (np.isinf(got) == np.isinf(expected)).all()
    finite = np.isfinite(expected)
    assert np.allclose(got[finite], expected[finite], rtol=0, atol=1e-9)
    assert np.allclose(clock.op(got[finite]), u[finite], rtol=0, atol=1e-9)


def test_seasonality_has_mean_one_over_a_year() -> None:
    hours = pd.date_range("2023-01-01", "2023-12-31 23:00", freq="h", tz="UTC")
    assert seasonality(hours).mean() == pytest.approx(1.0, abs=0.02)


# ---------------------------------------------------------------- oracles


@settings(max_examples=25, deadline=None)
@given(
    day=st.integers(min_value=0, max_value=760),
    horizon=st.integers(min_value=1, max_value=365),
)
def test_oracle_outputs_are_probabilities_and_values(day: int, horizon: int) -> None:
    data = _small()
    cutoff = pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=day)
    p = oracle_churn_probability(data.truth, cutoff=cutoff, horizon_days=horizon)
    v = oracle_expected_value(data.truth, cutoff=cutoff, horizon_days=horizon)
    assert p.between(0.0, 1.0).all()
    assert v.ge(0.0).all()
    assert np.isfinite(v).all()
    signed_up = data.truth.loc[data.truth["signup_at"] < cutoff, "customer_id"]
    assert p.index.tolist() == signed_up.tolist()
    assert v.index.tolist() == signed_up.tolist()


_SMALL: list[SyntheticData] = []


def _small() -> SyntheticData:
    if not _SMALL:
        _SMALL.append(generate(500, start=START, end=END, seed=3))
    return _SMALL[0]


def test_oracle_knows_who_is_gone(data: SyntheticData) -> None:
    cutoff = pd.Timestamp("2024-06-01", tz="UTC")
    p = oracle_churn_probability(data.truth, cutoff=cutoff, horizon_days=60)
    v = oracle_expected_value(data.truth, cutoff=cutoff, horizon_days=60)
    truth = data.truth.set_index("customer_id").loc[p.index]
    gone = truth["dropout_at"].notna() & (truth["dropout_at"] <= cutoff)
    assert gone.sum() > 50
    assert (p[gone] == 1.0).all()
    assert (v[gone] == 0.0).all()
    assert (p[truth["never_buys"]] == 1.0).all()
    alive_buyers = ~gone & ~truth["never_buys"]
    assert p[alive_buyers].lt(1.0).all()
    # Leaving customers are likelier to stop buying than active ones with the same rate.
    leaving = alive_buyers & truth["leaving_at"].notna() & (truth["leaving_at"] <= cutoff)
    assert p[leaving].mean() > p[alive_buyers & ~leaving].mean()


@pytest.mark.parametrize(("cutoff", "horizon"), [("2024-03-01", 90), ("2024-09-15", 30)])
def test_oracles_are_calibrated_against_what_happened(
    data: SyntheticData, cutoff: str, horizon: int
) -> None:
    c = pd.Timestamp(cutoff, tz="UTC")
    p = oracle_churn_probability(data.truth, cutoff=c, horizon_days=horizon)
    v = oracle_expected_value(data.truth, cutoff=c, horizon_days=horizon)
    events = data.events
    window = events[
        (events["occurred_at"] > c) & (events["occurred_at"] <= c + pd.Timedelta(days=horizon))
    ]
    bought = set(_by_type(window, "purchase")["customer_id"])
    no_purchase = ~p.index.isin(list(bought))
    assert p.mean() == pytest.approx(no_purchase.mean(), abs=0.025)
    # Among customers who might buy, a higher probability means fewer buy.
    alive = p < 1.0
    high = p[alive] > p[alive].median()
    assert no_purchase[alive][high.to_numpy()].mean() > no_purchase[alive][~high.to_numpy()].mean()
    net = (
        _by_type(window, "purchase")
        .groupby("customer_id")["amount"]
        .sum()
        .sub(_by_type(window, "refund").groupby("customer_id")["amount"].sum(), fill_value=0)
    )
    actual = net.reindex(v.index, fill_value=0.0)
    assert v.sum() == pytest.approx(actual.sum(), rel=0.1)
    assert np.corrcoef(v, actual)[0, 1] > 0.5


def _naive_no_purchase(
    lam: float, mu: float, nu: float, phi: float, leaving: bool, daily: np.ndarray
) -> float:
    """Euler integration with small steps of the no-purchase probability."""
    steps = 200
    a, b, d = (0.0, 1.0, 0.0) if leaving else (1.0, 0.0, 0.0)
    for s in daily:
        dt = 1.0 / steps
        for _ in range(steps):
            da = -(mu + lam * s) * a
            db = mu * a - (nu + phi * lam * s) * b
            dd = nu * b
            a, b, d = a + da * dt, b + db * dt, d + dd * dt
    return a + b + d


def test_churn_oracle_matches_naive_integration() -> None:
    cutoff = pd.Timestamp("2024-11-01", tz="UTC")
    horizon = 20
    truth = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "signup_at": pd.to_datetime(["2024-01-01"] * 3, utc=True),
            "never_buys": [False, False, False],
            "purchase_rate": [0.05, 0.2, 0.1],
            "spend_mean": [100.0, 50.0, 10.0],
            "leave_hazard": [0.01, 0.002, 0.03],
            "leave_prob_per_purchase": [0.0, 0.0, 0.0],
            "leaving_exit_hazard": [1 / 30, 1 / 30, 1 / 10],
            "leaving_purchase_factor": [0.5, 0.5, 0.2],
            "expected_refund_share": [0.0, 0.0, 0.0],
            "leaving_at": pd.to_datetime([None, "2024-10-20", None], utc=True),
            "dropout_at": pd.to_datetime([None, None, None], utc=True),
        }
    )
    p = oracle_churn_probability(truth, cutoff=cutoff, horizon_days=horizon)
    hours = pd.date_range(cutoff, periods=horizon * 24, freq="h")
    daily = seasonality(hours).reshape(horizon, 24).mean(axis=1)
    for i, row in truth.iterrows():
        expected = _naive_no_purchase(
            row["purchase_rate"],
            row["leave_hazard"],
            row["leaving_exit_hazard"],
            row["leaving_purchase_factor"],
            i == 1,
            daily,
        )
        assert p[row["customer_id"]] == pytest.approx(expected, abs=2e-4)
    # With no transitions and no refunds, expected value is rate * exposure * spend.
    v = oracle_expected_value(truth.assign(leave_hazard=0.0), cutoff=cutoff, horizon_days=horizon)
    assert v["a"] == pytest.approx(0.05 * daily.sum() * 100.0, rel=1e-6)


def test_oracle_reads_the_written_truth_file(tmp_path: Path) -> None:
    data = _small()
    paths = write_synthetic(data, tmp_path, file_format="csv")
    truth = pd.read_csv(paths["truth"])
    cutoff = "2024-05-01"
    from_file = oracle_churn_probability(truth, cutoff=cutoff, horizon_days=45)
    in_memory = oracle_churn_probability(data.truth, cutoff=cutoff, horizon_days=45)
    # Times are written at whole seconds, so states can only differ at the cutoff instant.
    assert np.abs(from_file.to_numpy() - in_memory.to_numpy()).max() < 1e-9


def test_oracle_refuses_bad_arguments(data: SyntheticData) -> None:
    with pytest.raises(FeaturesError, match="horizon_days"):
        oracle_churn_probability(data.truth, cutoff="2024-01-01", horizon_days=0)
    with pytest.raises(FeaturesError, match="Missing"):
        oracle_expected_value(
            data.truth.drop(columns="dropout_at"), cutoff="2024-01-01", horizon_days=5
        )


# ---------------------------------------------------------------- arguments


def test_generate_refuses_bad_arguments() -> None:
    with pytest.raises(FeaturesError, match="n_customers"):
        generate(0, seed=1)
    with pytest.raises(FeaturesError, match="end date must not be before"):
        generate(10, start="2024-01-02", end="2024-01-01", seed=1)
    with pytest.raises(FeaturesError, match="start date"):
        generate(10, start="not a date", seed=1)
    with pytest.raises(ValueError, match="never_buy_share"):
        SyntheticConfig(never_buy_share=2.0)


def test_config_changes_the_model() -> None:
    none_never = generate(
        400,
        start="2024-01-01",
        end="2024-06-30",
        seed=1,
        config=SyntheticConfig(never_buy_share=0.0),
    )
    assert not none_never.truth["never_buys"].any()


# ---------------------------------------------------------------- CLI


def test_cli_writes_csv_that_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    result = CliRunner().invoke(
        main, ["data", "generate", "--customers", "300", "--seed", "7", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "events" in result.output
    assert "never buy" in result.output
    customers = pd.read_csv(out / "customers.csv", dtype=str)
    events = pd.read_csv(out / "events.csv", dtype={"customer_id": str, "order_id": str})
    truth = pd.read_csv(out / "truth.csv")
    assert len(customers) == 300
    assert len(truth) == 300
    data = generate(300, start=START, end=END, seed=7)
    assert len(events) == len(data.events)
    assert events["occurred_at"].iloc[0].endswith("Z")
    parsed = pd.to_datetime(events["occurred_at"], utc=True)
    assert (parsed.to_numpy() == data.events["occurred_at"].to_numpy()).all()
    assert np.allclose(events["amount"].fillna(-1), data.events["amount"].fillna(-1))


def test_cli_writes_parquet(tmp_path: Path) -> None:
    out = tmp_path / "pq"
    result = CliRunner().invoke(
        main,
        [
            "data",
            "generate",
            "--customers",
            "200",
            "--seed",
            "1",
            "--out",
            str(out),
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--format",
            "parquet",
        ],
    )
    assert result.exit_code == 0, result.output
    events = pd.read_parquet(out / "events.parquet")
    assert events["occurred_at"].max() < pd.Timestamp("2024-04-01", tz="UTC")
    check_events(events.astype({"occurred_at": "datetime64[us, UTC]"}))
    assert {p.name for p in out.iterdir()} == {
        "customers.parquet",
        "events.parquet",
        "truth.parquet",
    }


def test_cli_reports_a_bad_date(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["data", "generate", "--customers", "5", "--out", str(tmp_path), "--end", "2024-02-30"],
    )
    assert result.exit_code == 2
    assert "end date" in result.output
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- learnability


def _simple_features(data: SyntheticData, cutoff: pd.Timestamp) -> pd.DataFrame:
    events = data.events[data.events["occurred_at"] < cutoff]
    customers = data.customers[data.customers["signup_at"] < cutoff].set_index("customer_id")
    purchases = _by_type(events, "purchase").groupby("customer_id")["occurred_at"]
    recent = events[events["occurred_at"] >= cutoff - pd.Timedelta(days=30)]
    frame = pd.DataFrame(index=customers.index)
    last = purchases.max().reindex(frame.index)
    frame["recency"] = np.log1p(((cutoff - last) / pd.Timedelta(days=1)).fillna(1000.0))
    frame["frequency"] = np.log1p(purchases.size().reindex(frame.index, fill_value=0))
    frame["tenure"] = np.log1p((cutoff - customers["signup_at"]) / pd.Timedelta(days=1))
    frame["browse_30d"] = np.log1p(
        _by_type(recent, "browse").groupby("customer_id").size().reindex(frame.index, fill_value=0)
    )
    return frame


def _no_purchase_label(data: SyntheticData, index: pd.Index, cutoff: pd.Timestamp) -> np.ndarray:
    events = data.events
    window = events[
        (events["occurred_at"] > cutoff)
        & (events["occurred_at"] <= cutoff + pd.Timedelta(days=90))
        & (events["event_type"] == "purchase")
    ]
    return (~index.isin(list(window["customer_id"].unique()))).astype(int)


def test_churn_is_learnable_but_not_trivial(data: SyntheticData) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    train_at = pd.Timestamp("2024-01-01", tz="UTC")
    test_at = pd.Timestamp("2024-06-01", tz="UTC")
    x_train = _simple_features(data, train_at)
    x_test = _simple_features(data, test_at)
    model = LogisticRegression(max_iter=1000).fit(
        x_train, _no_purchase_label(data, x_train.index, train_at)
    )
    y_test = _no_purchase_label(data, x_test.index, test_at)
    model_auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    oracle = oracle_churn_probability(data.truth, cutoff=test_at, horizon_days=90)
    oracle_auc = roc_auc_score(y_test, oracle.loc[x_test.index])
    assert model_auc > 0.8  # behaviour carries the signal
    assert oracle_auc > model_auc + 0.02  # but the latent state is not visible
