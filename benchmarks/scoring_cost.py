"""What each component of the default model costs to score one request: ONNX Runtime and PyTorch, per 200 candidates.

    python benchmarks/scoring_cost.py [--rows 200] [--repeats 200] [--threads 1]

Builds (untrained: the cost does not depend on the weights) the deep model of the paper's configuration, with the wide
terms, with target attention, with both (the defaults) and with the wide terms' pairwise crosses, on an encoder fitted
to a small synthetic log; exports each as the service does (``serving.export``) and times ONNX Runtime's call and the
PyTorch forward pass on the same encoded candidates. Medians in milliseconds; compare rows of one run only.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from unitarget.config import Config, merge
from unitarget.data.batch import Features
from unitarget.data.features import FeatureLayout
from unitarget.models import MultiTaskModel, build_model
from unitarget.models.average import InputMap, LogitAverage
from unitarget.serving.export import onnx_runner, sample_inputs, write_onnx
from unitarget.synth import World, WorldParams, generate_log
from unitarget.training.setup import encoder_for

OFF = {"wide": False, "attention": {"bags": []}}
SETUPS = {
    "deep (the paper's network)": {"model": OFF},
    "+ wide terms": {"model": {"attention": {"bags": []}}},
    "+ target attention": {"model": {"wide": False}},
    "defaults (wide + attention)": {},
    "defaults + wide crosses": {"model": {"wide_crosses": True}},
}
#: the defaults as ``train`` publishes them: the mean of the refit's and the selected model's logits
#: (``models.average``), the selected one behind the map from the encoder of every row to that of the older rows
AVERAGED = "defaults, published (the refit average: two members)"


def _median_ms(call, repeats: int) -> float:
    for _ in range(10):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200, help="candidates per request")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="threads of PyTorch and ONNX Runtime (a worker's: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = generate_log(World.generate(WorldParams(n_impressions=50_000, seed=1)))
    print(f"| setup | ONNX Runtime, ms per {args.rows} | PyTorch, ms per {args.rows} |\n| --- | ---: | ---: |")
    for name, overrides in [*SETUPS.items(), (AVERAGED, {})]:
        config = merge(Config(), overrides)

        def built(layout: FeatureLayout) -> MultiTaskModel:
            return build_model(config.model, layout, [t.name for t in config.tasks], config.task_groups())

        encoder = encoder_for(config).fit(table)
        model = built(encoder.layout_)
        if name == AVERAGED:
            older = encoder_for(config).fit(table.slice(0, table.num_rows * 3 // 4))
            model = LogitAverage([model, built(older.layout_)], [None, InputMap.between(encoder, older)])
        model.eval()
        ids, dense = sample_inputs(encoder, args.rows)
        path = Path(tempfile.mkdtemp()) / "model.onnx"
        graph = onnx_runner(write_onnx(SimpleNamespace(model=model, encoder=encoder), path), threads=args.threads)
        features = Features(torch.from_numpy(ids), torch.from_numpy(dense))

        def forward() -> None:
            with torch.inference_mode():
                model(features)

        print(f"| {name} | {_median_ms(lambda: graph(ids, dense), args.repeats):.2f} | "
              f"{_median_ms(forward, args.repeats):.2f} |", flush=True)


if __name__ == "__main__":
    main()
