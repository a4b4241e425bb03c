"""Training examples/s and prediction rows/s of the default model on synthetic rows.

    python benchmarks/train_predict_speed.py [--rows 1000000] [--threads 2] [--epochs 1] [--bf16]

Encodes the rows once (not timed), then times one training epoch of the real training loop
(source-balanced batches, masked multi-task loss, Adam, schedule) and batched prediction. The
time of validation and checkpointing is excluded from examples/s, as the loop reports it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from unitarget.config import Config, merge
from unitarget.data.features import FeatureEncoder
from unitarget.scoring import predict_probabilities
from unitarget.synth import World, WorldParams, generate_log
from unitarget.training.loop import MemoryStore, fit
from unitarget.training.setup import build_setup
from unitarget.training.tasks import labels_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = merge(Config(), {"train": {"bf16": args.bf16, "max_epochs": args.epochs, "patience": args.epochs}})
    table = generate_log(World.generate(WorldParams(n_impressions=args.rows, seed=1)))
    encoder = FeatureEncoder(config.features, config.sources, labels_of(config.tasks)).fit(table)
    data = encoder.transform(table)
    setup = build_setup(config, encoder.layout_, data)  # the default: source-balanced, static weights
    model = setup.model
    state = fit(model, setup.tasks, data, sampler=setup.sampler, balancer=setup.balancer,
                validate=lambda m: (0.0, {}), train_config=config.train, optim_config=config.optim,
                store=MemoryStore())
    train_speed = max(record["examples_per_s"] for record in state.history)

    predict_probabilities(model, data.features.slice(0, 65_536), bf16=args.bf16)  # warm-up
    started = time.perf_counter()
    predict_probabilities(model, data.features, config.train.eval_batch_size, bf16=args.bf16)
    predict_speed = len(data) / (time.perf_counter() - started)

    print(json.dumps({
        "rows": len(data),
        "threads": args.threads,
        "bf16": args.bf16,
        "categorical_features": encoder.layout_.n_categorical,
        "bags": len(encoder.layout_.bags),
        "embedding_rows": encoder.layout_.table_rows,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_examples_per_s": round(train_speed),
        "predict_rows_per_s": round(predict_speed),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
