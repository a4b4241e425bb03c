"""Parameters, training examples/s and prediction rows/s of each encoder on the same rows.

    python benchmarks/encoder_cost.py [--rows 400000] [--threads 2] [--steps 60] [--predict-rows 200000]

Generates synthetic impressions (the default world's generator, seed 1), keeps the ad impressions,
encodes them once (not timed) for the six per-format tasks of the CAMoE study (click and stream
per format, each masked to its format), then for each encoder of ``studies.cost.COST_ROWS`` times
``--steps`` training steps of batch 2,048 (after 3 warm-up steps) and scoring of
``--predict-rows`` rows in 8,192-row slices. "Masked by format" scores each format's rows with its
own two tasks only, skipping the experts of the other modality group.
"""

from __future__ import annotations

import argparse
import json
import platform

import pyarrow as pa
import pyarrow.compute as pc
import torch

from unitarget import contract
from unitarget.config import Config, merge
from unitarget.data.features import FeatureEncoder
from unitarget.reports.camoe import cost_table
from unitarget.studies.camoe_arms import LABELS, format_tasks
from unitarget.studies.cost import encoder_costs
from unitarget.synth import World, WorldParams, generate_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400_000, help="impressions generated (80 %% are ads)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--predict-rows", type=int, default=200_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = merge(Config(), {"tasks": format_tasks(), "train": {"threads": args.threads}})
    table = generate_log(World.generate(WorldParams(n_impressions=args.rows, seed=1)))
    ads = table.filter(pc.equal(table.column(contract.SOURCE).cast(pa.string()), contract.ADS))
    encoder = FeatureEncoder(config.features, config.sources, LABELS).fit(ads)
    data = encoder.transform(ads)
    costs = encoder_costs(config, encoder.layout_, data, steps=args.steps, predict_rows=args.predict_rows)

    print(cost_table(costs))
    print(json.dumps({
        "ad_rows": len(data), "threads": args.threads, "steps": args.steps, "predict_rows": args.predict_rows,
        "input_width": (encoder.layout_.n_categorical + len(encoder.layout_.bags))
        * config.model.embedding_dim + encoder.layout_.dense_dim,
        "costs": {c.name: {"parameters": c.parameters, "train_examples_per_s": round(c.train_examples_per_s),
                           "predict_rows_per_s": round(c.predict_rows_per_s)} for c in costs},
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "torch": torch.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
