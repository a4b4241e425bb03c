"""Training examples/s and prediction rows/s of a setup's model on synthetic rows.

    python benchmarks/train_predict_speed.py [--rows 1000000] [--threads 2] [--epochs 1] [--bf16] [--embedding-updates lazy]
                                             [--reference] [--repeats 3] [--preset paper|unified|PRESET:key=value]

The setup is ``--preset paper`` by default: the network the plain reference implements (one embedding table, the
MLP with batch norm, the towers; no wide terms, no dropout). ``--preset unified`` times the library's defaults, which
do more work per row (each task's wide term, dropout, embedding dropout): compare those to the reference only as
absolute figures.

Encodes the rows once (not timed), then times one training epoch of the real training loop
(source-balanced batches, masked multi-task loss, Adam, schedule) and batched prediction. The
time of validation and checkpointing is excluded from examples/s, as the loop reports it.

``--reference`` also times a plain PyTorch version of the same network (``plain_reference.py``)
on the same encoded tensors, alternating with the project's loop ``--repeats`` times, and prints
medians and the ratios: on a shared, noisy machine the ratio is the figure that counts.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from plain_reference import PlainModel, reference_epoch, reference_predict

from unitarget.config import Config, merge
from unitarget.data.features import FeatureEncoder
from unitarget.models import kernels
from unitarget.presets import parse_variant
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
    parser.add_argument("--embedding-updates", choices=["dense", "lazy"], default="dense",
                        help="optim.embedding_updates: lazy = row-sparse Adam on the embedding table")
    parser.add_argument("--reference", action="store_true", help="also time the plain PyTorch reference")
    parser.add_argument("--preset", default="paper", help="the setup timed; the default, paper, is the network the "
                        "plain reference implements (no wide terms, no dropout); unified = the library's defaults; "
                        "PRESET:key=value[,...] adds overrides (presets.parse_variant)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs with --reference (medians)")
    parser.add_argument("--no-onednn", action="store_true", help="the project's products on PyTorch's BLAS kernel "
                        "instead of oneDNN (models.kernels), to see what the kernel choice is worth on this CPU")
    args = parser.parse_args()
    kernels.set_onednn(not args.no_onednn)
    torch.set_num_threads(args.threads)

    config = merge(parse_variant(args.preset).setup(Config()), {"train": {"bf16": args.bf16, "max_epochs": args.epochs,
                                                                    "patience": args.epochs, "validate_every": None},
                              "optim": {"embedding_updates": args.embedding_updates}})
    table = generate_log(World.generate(WorldParams(n_impressions=args.rows, seed=1)))
    encoder = FeatureEncoder(config.features, config.sources, labels_of(config.tasks),
                             config.shared_vocabularies()).fit(table)
    data = encoder.transform(table)
    setup = build_setup(config, encoder.layout_, data)  # the default: source-balanced, static weights
    model = setup.model
    reference = PlainModel(encoder.layout_, config.model.embedding_dim, config.model.hidden,
                           config.model.tower_hidden[0], len(config.tasks))
    task_labels = torch.tensor([encoder.labels.index(task.label) for task in config.tasks])
    speeds: dict[str, list[float]] = {"train": [], "predict": [], "reference_train": [], "reference_predict": []}
    for _ in range(args.repeats if args.reference else 1):
        state = fit(model, setup.tasks, setup.batches, balancer=setup.balancer,
                    validate=lambda m: (0.0, {}), train_config=config.train, optim_config=config.optim,
                    store=MemoryStore())
        speeds["train"].append(max(record["examples_per_s"] for record in state.history))
        predict_probabilities(model, data.features.slice(0, 65_536), bf16=args.bf16)  # warm-up
        started = time.perf_counter()
        predict_probabilities(model, data.features, config.train.eval_batch_size, bf16=args.bf16)
        speeds["predict"].append(len(data) / (time.perf_counter() - started))
        if args.reference:
            speeds["reference_train"].append(reference_epoch(
                reference, data, task_labels, batch_size=config.train.batch_size, steps=len(setup.batches)))
            speeds["reference_predict"].append(reference_predict(reference, data))

    medians = {name: round(statistics.median(values)) for name, values in speeds.items() if values}
    print(json.dumps({
        "rows": len(data),
        "threads": args.threads,
        "bf16": args.bf16,
        "embedding_updates": args.embedding_updates,
        "onednn": not args.no_onednn,
        "repeats": len(speeds["train"]),
        "categorical_features": encoder.layout_.n_categorical,
        "bags": len(encoder.layout_.bags),
        "embedding_rows": encoder.layout_.table_rows,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_examples_per_s": medians["train"],
        "predict_rows_per_s": medians["predict"],
        **({"reference_train_examples_per_s": medians["reference_train"],
            "reference_predict_rows_per_s": medians["reference_predict"],
            "train_ratio": round(medians["train"] / medians["reference_train"], 3),
            "predict_ratio": round(medians["predict"] / medians["reference_predict"], 3),
            "all": {name: [round(v) for v in values] for name, values in speeds.items()}} if args.reference else {}),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
