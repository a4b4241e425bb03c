"""fp32 linear layers on PyTorch's BLAS kernel against oneDNN's (``models.kernels``), shape by shape.

    python benchmarks/linear_kernels.py [--threads 2] [--rows 8192]

Times forward products of the default model's layer shapes (and a square product for the machine's rate), as
``torch.addmm`` and as ``kernels.linear``, and prints ms and GFLOP/s: whether oneDNN is worth it on this CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from unitarget.models import kernels


def _ms(product, repeats: int = 5, calls: int = 20) -> float:
    for _ in range(3):
        product()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            product()
        times.append((time.perf_counter() - started) / calls * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=8_192)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with torch.no_grad():
        for k, n in [(306, 256), (256, 128), (128, 320), (320, 5), (2_048, 2_048)]:
            x, weight, bias = torch.randn(args.rows, k), torch.randn(n, k), torch.randn(n)
            flop = 2 * args.rows * k * n
            blas = _ms(lambda: torch.addmm(bias, x, weight.t()))
            onednn = _ms(lambda: kernels.linear(x, weight, bias))
            rows.append({"shape": f"{args.rows}x{k}x{n}", "blas_ms": round(blas, 3), "onednn_ms": round(onednn, 3),
                         "blas_gflops": round(flop / blas / 1e6), "onednn_gflops": round(flop / onednn / 1e6)})
    print(json.dumps({"threads": args.threads, "onednn": kernels.onednn_applies(x, weight), "shapes": rows}, indent=1))


if __name__ == "__main__":
    main()
