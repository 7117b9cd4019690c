"""What the store's baseline lookup and the datasets' content fingerprint cost.

`Store.rows()` finds each row's baseline in the whole history (by `baseline_key`, target and
evaluation items) and turns the row's and that baseline's per-item results into accuracy
intervals (harness.accuracy_ci; every synthetic cell holds 500 items), and the baseline key of a built-in dataset holds a sha256 of its
tensors. Both are paid by every report, export and run; this prints their time, repeated, on
a synthetic store (30 runs of 100 cells, two batch sizes: 6,000 rows) with and without the
index on `cells(baseline_key, target)`, and for Fashion-MNIST's 70,000 images when present.

    python -m harness.benchmarks.store_lookup [--repeats 7]

Run it idle and beside busy processes (e.g. two `python3 -c "while True: pass"`): the figures
are medians with the range over the repeats.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import store as store_mod
from harness.accuracy_ci import pack
from harness.errors import UsageError
from harness.registry import DATASETS
from harness.store import Store


def synthetic_store(path: Path, runs: int = 30, cells: int = 100) -> None:
    st = Store(path)
    rng = random.Random(0)
    for run in range(runs):
        st.start_run(f"r{run}", suite="s")
        for m in range(cells):
            st.put_cell({"cell_key": f"k{run}-{m}", "run_id": f"r{run}", "suite": "s",
                         "model": f"m{m % 20}", "method": "baseline" if m < 20 else "l1",
                         "method_config": {}, "target": "t", "status": "ok",
                         "top1_target": 0.9, "eval_samples": 500,
                         "baseline_key": f"B{m % 20}",
                         "items_correct": pack([rng.random() < 0.9 for _ in range(500)])},
                        [{"batch_size": b, "speedup": 1.0} for b in (1, 64)])
    st.close()


def timed(fn: Callable[[], object], repeats: int) -> str:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return (f"median {statistics.median(out):.3f} s, range {min(out):.3f}-{max(out):.3f} s "
            f"(n={repeats})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "store.db"
        synthetic_store(db)
        for label in ("with the index", "without the index"):
            st = Store(db, readonly=True)

            def rows() -> None:
                store_mod._intervals.cache_clear()  # each row's intervals computed afresh
                st.rows(latest=False)

            print(f"rows(latest=False), 6,000 rows, {label}: {timed(rows, a.repeats)}")
            st.close()
            con = sqlite3.connect(db)
            con.execute("DROP INDEX IF EXISTS cells_by_baseline")
            con.commit()
            con.close()
    ds = DATASETS.get("fashion-mnist")()
    try:
        ds.train(), ds.test()
    except UsageError as exc:
        print(f"fingerprint: skipped ({exc})")
        return

    def fingerprint() -> None:
        ds._content = None  # measured afresh each time (a process computes it once)
        ds.fingerprint()

    print(f"fashion-mnist fingerprint (70,000 images): {timed(fingerprint, a.repeats)}")


if __name__ == "__main__":
    main()
