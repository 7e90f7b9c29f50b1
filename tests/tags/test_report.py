from __future__ import annotations

import base64
import re

from tags.report import flag_messages, render_report, sizes_figure
from tags.store import TagStore
from tests.tags.conftest import long_table


def test_report_embeds_charts_and_flags(store: TagStore) -> None:
    mar = [(c, "lifecycle", "dormant") for c in ("c1", "c2", "c3", "c5")]
    store.write_snapshot(long_table(mar, "2024-03-31"), as_of="2024-03-31", n_customers=5)
    cov = store.coverage(threshold=0.1)
    tags = sorted(set(cov["tag_id"]))
    matrices = {t: store.transition_matrix(t, "2024-02-29", "2024-03-31") for t in tags}
    html = render_report(
        cov,
        store.sizes_over_time(),
        matrices,
        title="demo <report>",
        threshold=0.1,
        meta={
            "as_of": "2024-03-31",
            "previous": "2024-02-29",
            "n_customers": 5,
            "run_id": "r1",
            "role": "executive",
            "generated": "now",
        },
    )
    assert "demo &lt;report&gt;" in html  # autoescaped
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(pngs) == 2 * len(tags)
    assert all(base64.b64decode(p).startswith(b"\x89PNG") for p in pngs)
    assert "old_customer</b>: no customer has this tag" in html
    assert "lifecycle</b> = dormant: share moved +55.0 points (25.0% -&gt; 80.0%)" in html


def test_flag_messages_once_per_zero_tag(store: TagStore) -> None:
    store.write_snapshot(long_table([("c1", "lifecycle", "new")], "2024-03-31"), as_of="2024-03-31")
    msgs = flag_messages(store.coverage(threshold=0.99))
    zero = [m for m in msgs if m["text"] == "no customer has this tag"]
    assert sorted(m["tag_id"] for m in zero) == ["age_band", "old_customer", "rfm_segment"]


def test_report_shows_display_names_and_zero_based_size_axes(store: TagStore) -> None:
    mar = [(c, "lifecycle", "dormant") for c in ("c1", "c2", "c3", "c5")]
    store.write_snapshot(long_table(mar, "2024-03-31"), as_of="2024-03-31", n_customers=5)
    cov = store.coverage(threshold=0.1)
    html = render_report(
        cov,
        store.sizes_over_time(),
        {},
        title="t",
        threshold=0.1,
        meta={
            "as_of": "2024-03-31",
            "previous": "2024-02-29",
            "n_customers": 5,
            "run_id": "r1",
            "role": "executive",
            "generated": "now",
        },
        names={"lifecycle": "生命周期 Lifecycle stage"},
    )
    assert "<td>生命周期 Lifecycle stage (lifecycle)</td>" in html
    assert '<h2 id="lifecycle">生命周期 Lifecycle stage (lifecycle)</h2>' in html
    assert "<b>生命周期 Lifecycle stage (lifecycle)</b> = dormant" in html
    # Every size chart starts at zero, whatever the counts.
    sizes = store.sizes_over_time()
    for tag in sorted(set(sizes["tag_id"])):
        _, ax = sizes_figure(sizes, tag)
        assert ax.get_ylim()[0] == 0
