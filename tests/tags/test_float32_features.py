"""Rules over float32 features (the catalogue's dtype for ratios, days, scores)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tags.rules import compile_rule, frame_kinds


def test_a_threshold_at_a_float32_value_compares_at_the_features_precision() -> None:
    # 7 refunds / 10 orders stored as float32(0.7), which is just below float64 0.7.
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series(["a", "b", "c"], dtype="string"),
            "refund_rate": np.array([0.7, 0.6, np.nan], dtype=np.float32),
            "monetary_total": np.array([100.10, 100.09, 0.0], dtype=np.float64),
        }
    )
    kinds = frame_kinds(frame)
    assert compile_rule("refund_rate >= 0.7", names=kinds).mask(frame).tolist() == [
        True,
        False,
        False,
    ]
    assert compile_rule("refund_rate = 0.7", names=kinds).mask(frame).tolist() == [
        True,
        False,
        False,
    ]
    assert compile_rule("monetary_total >= 100.1", names=kinds).mask(frame).tolist() == [
        True,
        False,
        False,
    ]
