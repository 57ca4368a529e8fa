"""The `seed` experiment in bf16 (`--set precision=auto` on a CPU with AMX) against the fp32 reference store:
each configuration's final test accuracies, the fp32 mean's 95% interval, whether the bf16 mean lies in it, and
the difference bf16 - fp32 with Welch's 95% interval. Times are not compared here: the fp32 store ran on another
machine (its report names it), so a ratio of times would mix the precision with the CPU.

    python docs/reference/seed-bf16-cpu/compare.py [BF16_RESULTS_DIR]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from scipy import stats

from mnistbench.api import load_results
from mnistbench.report.estimates import difference

HERE = Path(__file__).parent
FP32 = HERE.parent / "seed-cpu"


def t_interval(values: list[float]) -> tuple[float, float]:
    mean, n = statistics.fmean(values), len(values)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / n ** 0.5
    return mean - half, mean + half


def main() -> None:
    fp32 = {s.label: s for s in load_results("seed", FP32).summaries}
    bf16 = {s.label: s for s in load_results("seed", Path(sys.argv[1]) if len(sys.argv) > 1 else HERE).summaries}
    print(f"{'configuration':36s} {'fp32 acc (95% CI)':>26s} {'bf16 acc':>9s} {'in CI':>5s} "
          f"{'bf16 - fp32, points (95% CI)':>30s}")
    for label, ours in bf16.items():
        ref = fp32.get(label)
        if ref is None:
            continue
        a = [r.final_accuracy for r in ours.results if r.final_accuracy is not None]
        b = [r.final_accuracy for r in ref.results if r.final_accuracy is not None]
        lo, hi = t_interval(b)
        mean = statistics.fmean(a)
        d = difference(a, b)
        precisions = {r.environment.get("precision") for r in ours.results}
        print(f"{label:36s} {statistics.fmean(b):.4f} ({lo:.4f}-{hi:.4f}) {mean:9.4f} "
              f"{'yes' if lo <= mean <= hi else 'NO':>5s} {100 * d.estimate:+8.2f} ({100 * d.low:+.2f} to "
              f"{100 * d.high:+.2f})  [{', '.join(sorted(map(str, precisions)))}; n={len(a)}/{len(b)}]")


if __name__ == "__main__":
    main()
