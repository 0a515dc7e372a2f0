"""Run the soak loop of tests/test_soak.py on its own and print its figures as a table.

    python bench/soak_report.py                      # 200 clients, 50 churning, 20 s
    python bench/soak_report.py --clients 300 --seconds 40

Client and server run in this one process (as in the test), so "RSS per connection" covers
both ends of each connection and the PING latency includes the clients' own load.
Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_soak import run_soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200, help="clients in all (default 200)")
    parser.add_argument("--churners", type=int, default=50, help="of which reconnect (50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="chat phase (20 s)")
    parser.add_argument("--say-every", type=float, default=5.0, help="mean s between lines")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not 0 <= args.churners < args.clients or args.seconds > 600:
        parser.error("need 0 <= churners < clients and at most 600 seconds")
    with tempfile.TemporaryDirectory() as tmp:
        figures = run_soak(
            Path(tmp),
            clients=args.clients,
            churners=args.churners,
            seconds=args.seconds,
            say_every=args.say_every,
            seed=args.seed,
        )
    print(figures.table())
    for error in figures.errors[:10]:
        print("error:", error)
    return 1 if figures.errors else 0


if __name__ == "__main__":
    sys.exit(main())
