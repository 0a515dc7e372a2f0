"""The fan-out load generator itself works: 5 members, 1 s, nothing lost or duplicated.

Not a timed test: it asserts correctness of bench/fanout.py (which `make bench` relies on to
count loss), never a rate.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import lab, labchat_server  # noqa: E402
from bench.fanout import fanout_once  # noqa: E402


def test_fanout_harness_counts_every_delivery() -> None:
    with lab(5) as lab_, labchat_server(lab_) as (port, _):
        r = fanout_once("labchat", port, str(lab_.ca), 5, senders=2, rate=10.0, duration=1.0)
    assert r["sent"] > 0
    assert r["deliveries"] == r["expected"] == r["sent"] * 5
    assert (r["lost"], r["dup"], r["dead"]) == (0, 0, 0)
