"""The global medians and quantiles equal numpy's (the local engine's oracle) from the
order statistics alone, in the values' dtype; which tags need repeated passes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spark.thresholds import _numpy_value, _positions, needs_rounds
from tags.catalogue import Catalogue, CompiledTag
from tags.config import TagsConfig
from tags.rules import compile_rule


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=60
    ),
    q=st.floats(min_value=0.0, max_value=1.0),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_order_statistics_reproduce_numpy_quantile_and_median(
    values: list[float], q: float, dtype: str
) -> None:
    array = np.array(values, dtype=dtype)
    ordered = np.sort(array)
    n = len(array)
    for func, want in (
        ("median", float(np.median(array))),
        ("quantile", float(np.quantile(array, q))),
    ):
        stats = [float(ordered[i]) for i in _positions(func, n, q)]
        assert _numpy_value(func, n, q, dtype, stats) == want, (func, n, q)


def _tag(**rules: object) -> CompiledTag:
    """A compiled tag with only the parts a test needs (definition unused)."""
    return CompiledTag(tag=None, **rules)  # type: ignore[arg-type]


def test_needs_rounds_only_when_an_aggregate_depends_on_another() -> None:
    names = {"x": "num", "y": "num", "hi": "bool"}

    def rule(text: str) -> object:
        return compile_rule(text, names=names)

    assert not needs_rounds(_tag(when=rule("x > median(x)")))
    assert not needs_rounds(_tag(lets=(("hi", rule("x > median(x)")),), when=rule("hi and y > 0")))
    assert needs_rounds(_tag(scope=rule("x > median(x)"), when=rule("y > median(y)")))
    with_let = {"x": "num", "y": "num", "gap": "num"}
    gap = compile_rule("abs(x - median(x))", names=with_let)
    when = compile_rule("gap > median(gap)", names=with_let)
    assert needs_rounds(_tag(lets=(("gap", gap),), when=when))


def test_standard_library_needs_one_pass(tmp_path: object) -> None:
    from tags.catalogue import copy_library

    copy_library(tmp_path)  # type: ignore[arg-type]
    catalogue = Catalogue.load(tmp_path, TagsConfig())  # type: ignore[arg-type]
    from spark.thresholds import aggregate_tags

    tags = aggregate_tags(catalogue)
    assert {"rfm_segment", "value_tier"} <= set(tags)
    assert not any(needs_rounds(catalogue.compiled(t)) for t in tags)


def test_aggregate_depth_counts_the_longest_chain_of_aggregates() -> None:
    from spark.thresholds import aggregate_depth

    names = {"x": "num", "y": "num", "gap": "num", "hi": "bool"}

    def rule(text: str) -> object:
        return compile_rule(text, names=names)

    assert aggregate_depth(_tag(when=rule("x > 0"))) == 0
    assert aggregate_depth(_tag(when=rule("x > median(x)"))) == 1
    assert aggregate_depth(_tag(scope=rule("x > median(x)"))) == 1
    # The population of the when's quantile depends on the scope's median.
    assert aggregate_depth(_tag(scope=rule("x > median(x)"), when=rule("y > median(y)"))) == 2
    # A let relative to a median, aggregated again; then a let of that, once more.
    gap = rule("abs(x - median(x))")
    assert aggregate_depth(_tag(lets=(("gap", gap),), when=rule("gap > median(gap)"))) == 2
    hi = rule("gap > median(gap)")
    chained = _tag(lets=(("gap", gap), ("hi", hi)), when=rule("hi and y > mean(y)"))
    assert aggregate_depth(chained) == 2
    both = _tag(scope=rule("x > median(x)"), lets=(("gap", gap),), when=rule("gap > median(gap)"))
    assert aggregate_depth(both) == 3
