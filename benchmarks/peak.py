"""Measure this machine's matmul peak (FLOP/s), the yardstick for "share of peak" in the benchmarks."""

from __future__ import annotations

import argparse
import time

import torch

from mnistbench.core.clock import synchronize


def matmul_peak(dtype: torch.dtype = torch.float32, device: str = "cpu", n: int | None = None,
                seconds: float = 1.0) -> float:
    """Best FLOP/s of repeated n x n matmuls on `device` (best of several bursts, after a warm-up)."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    a @ b  # warm-up: thread pool start, kernel selection
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        synchronize(device)
        t = time.perf_counter()
        for _ in range(3):
            a @ b
        synchronize(device)
        best = max(best, 3 * 2 * n**3 / (time.perf_counter() - t))
    return best


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for dtype in (torch.float32, torch.bfloat16):
        print(f"{str(dtype):15s} {matmul_peak(dtype, args.device) / 1e9:8.1f} GFLOP/s on {args.device} "
              f"({torch.get_num_threads()} CPU threads)")
