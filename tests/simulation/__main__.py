"""``python -m tests.simulation``: run many seeds; print schedules per second and failures.

    python -m tests.simulation --seeds 10000          # seeds 0..9999
    python -m tests.simulation --start 5000 --seeds 100
    python -m tests.simulation --seed 1234            # one seed, its schedule and verdict

Exit code 0 when every seed kept every promise. String hashing is fixed
(``PYTHONHASHSEED=0``, set by re-running itself) so a seed replays exactly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from tests.simulation import run_seed


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "tests.simulation", *sys.argv[1:]])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="run this one seed and show its schedule")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # the bot's own log lines: thousands a schedule
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    failed: list[int] = []
    started = time.perf_counter()
    for done, seed in enumerate(seeds, start=1):
        outcome = run_seed(seed)
        if outcome.violations or args.seed is not None:
            print(outcome.report(), flush=True)
        if outcome.violations:
            failed.append(seed)
        if done % 100 == 0:
            rate = done / (time.perf_counter() - started)
            print(f"{done} schedules, {rate:.1f} a second, {len(failed)} failed", flush=True)
    elapsed = time.perf_counter() - started
    count = len(seeds)
    print(
        f"{count} schedules in {elapsed:.1f} s ({count / elapsed:.1f} a second);"
        f" {len(failed)} failed{': ' + ' '.join(map(str, failed)) if failed else ''}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
