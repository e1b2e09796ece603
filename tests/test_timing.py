"""Who a run's time goes to: the product inside ``spent_on_product``, the harness everywhere else."""

from __future__ import annotations

import time

from oscarvt import timing
from oscarvt.state import PhaseRecord


def test_the_products_time_is_what_passes_inside_its_waits_less_the_harness_work_in_them():
    before = timing.product_seconds()
    time.sleep(0.2)  # the harness's
    with timing.spent_on_product():
        time.sleep(0.3)
        with timing.spent_on_harness():  # e.g. a rebooted node started again
            time.sleep(0.2)
        time.sleep(0.1)
    spent = timing.product_seconds() - before
    assert 0.38 <= spent < 0.55, spent


def test_a_runs_share_counts_the_gaps_between_phases_as_the_harnesss():
    phases = [PhaseRecord("boot-headnode", 0, seconds=5, product_seconds=0),
              PhaseRecord("finish-oscar", 5, seconds=40, product_seconds=38)]
    assert timing.share(phases) == {"seconds": 45, "product_seconds": 38, "harness_seconds": 7,
                                    "harness_share": 0.156}
    with_gaps = timing.share(phases, wall=50)
    assert (with_gaps["harness_seconds"], with_gaps["harness_share"]) == (12, 0.24)
    assert timing.describe(with_gaps) == "harness 12s of 50s (24%)"


def test_a_share_takes_the_phases_from_any_iterable():
    phases = [PhaseRecord("start-oscar", 0, seconds=10, product_seconds=8)]
    assert timing.share(iter(phases)) == timing.share(phases)
