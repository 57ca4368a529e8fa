"""Measure this machine's matmul peak (FLOP/s), the yardstick for "share of peak" in the benchmarks."""

from __future__ import annotations

import argparse
import time

import torch


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 1.0) -> float:
    """Best FLOP/s of repeated n x n matmuls on the CPU (best of several bursts, after a warm-up)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up: thread pool start, kernel selection
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        for _ in range(3):
            a @ b
        best = max(best, 3 * 2 * n**3 / (time.perf_counter() - t))
    return best


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for dtype in (torch.float32, torch.bfloat16):
        print(f"{str(dtype):15s} {matmul_peak(dtype) / 1e9:8.1f} GFLOP/s ({torch.get_num_threads()} threads)")
