"""Ablation study of SGMA on the built-in dataset (the paper's claims, measured).

Trains each variant with several seeds, evaluates it on the test splits
(model selection on the seen-class validation split only) and writes a
Markdown table, a JSON file and a bar plot:

    python benchmarks/ablation.py --config configs/ablation.json --seeds 0 1 2 \\
        --output results/ablation

Variants:
  global      global branch only (embedding softmax loss)
  random      global + parts from random boxes
  no_cpt_div  global + SGMA parts, without compactness and diversity losses
  full        full SGMA (all four losses)
  no_cct      full SGMA without the class-center triplet loss and score
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = {
    "global": ["model.part_mode=none", "model.center.enabled=false", "train.init.enabled=false"],
    "random": ["model.part_mode=random", "train.init.enabled=false"],
    "no_cpt_div": ["loss.cpt_weight=0", "loss.div_weight=0"],
    "full": [],
    "no_cct": ["model.center.enabled=false"],
}
METRICS = ("zsl_top1", "gzsl_u", "gzsl_s", "gzsl_h", "localisation")


def run_variant(config, variant, seed, output):
    """Trains and evaluates one (variant, seed); returns its metrics."""
    from sgma_keras import training
    from sgma_keras.config import load_config

    run_dir = os.path.join(output, "runs", f"{variant}_seed{seed}")
    overrides = VARIANTS[variant] + [
        # The dataset is the same for every run (its own seed); the model's varies.
        f"seed={seed}", f"output_dir={run_dir}", "train.tensorboard=false",
    ]
    cfg = load_config(config, overrides)
    started = time.time()
    results = training.train(cfg, verbose=0)
    loc = results.get("part_localisation")
    rates = [r for r in (loc or {}).get("part_hit_rate", []) if r is not None]
    return {
        "zsl_top1": results["zsl_top1"],
        "gzsl_u": results["gzsl_u"],
        "gzsl_s": results["gzsl_s"],
        "gzsl_h": results["gzsl_h"],
        # Mean over predicted parts of the share of boxes holding a true part centre.
        "localisation": sum(rates) / len(rates) if rates else None,
        "seconds": round(time.time() - started, 1),
    }


def summarise(runs):
    import numpy as np

    table = {}
    for variant, per_seed in runs.items():
        row = {}
        for metric in METRICS:
            values = [r[metric] for r in per_seed if r.get(metric) is not None]
            row[metric] = (float(np.mean(values)), float(np.std(values))) if values else None
        row["seeds"] = len(per_seed)
        table[variant] = row
    return table


def markdown(table, command, machine):
    def cell(value):
        return "n/a" if value is None else f"{100 * value[0]:.1f} ± {100 * value[1]:.1f}"

    lines = [
        "| variant | ZSL top-1 | GZSL u | GZSL s | GZSL H | part localisation | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, row in table.items():
        cells = " | ".join(cell(row[m]) for m in METRICS)
        lines.append(f"| {variant} | {cells} | {row['seeds']} |")
    lines += ["", f"Command: `{command}`", f"Machine: {machine}",
              "Mean ± standard deviation over seeds, in %."]
    return "\n".join(lines) + "\n"


def bar_plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    variants = list(table)
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(METRICS)
    for i, metric in enumerate(METRICS):
        means = [100 * (table[v][metric] or (np.nan, 0))[0] for v in variants]
        stds = [100 * (table[v][metric] or (0, 0))[1] for v in variants]
        ax.bar(np.arange(len(variants)) + i * width, means, width, yerr=stds, label=metric)
    ax.set_xticks(np.arange(len(variants)) + 0.4 - width / 2)
    ax.set_xticklabels(variants)
    ax.set_ylabel("%")
    ax.legend(fontsize=8)
    ax.set_title("SGMA ablation on the built-in dataset")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ablation.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--output", default="results/ablation")
    parser.add_argument("--report-only", action="store_true",
                        help="summarise the runs recorded so far without training more")
    args = parser.parse_args(argv)

    import platform

    import keras

    from sgma_keras.evaluation_utils import write_json_atomic
    from sgma_keras.training import main_logging

    main_logging()
    os.makedirs(args.output, exist_ok=True)
    record_path = os.path.join(args.output, "runs.json")
    runs = {}
    if os.path.exists(record_path):  # resume a study that was interrupted
        with open(record_path) as handle:
            runs = json.load(handle)
    started = time.time()
    # Seeds outermost: an interrupted study still has every variant at some seeds.
    for seed in args.seeds:
        for variant in args.variants:
            done = [r for r in runs.get(variant, []) if r["seed"] == seed]
            if done or args.report_only:
                continue
            result = run_variant(args.config, variant, seed, args.output)
            result["seed"] = seed
            runs.setdefault(variant, []).append(result)
            write_json_atomic(record_path, runs)
            print(f"{variant} seed {seed}: " + ", ".join(
                f"{k}={v:.3f}" for k, v in result.items() if isinstance(v, float)), flush=True)
    table = summarise({v: runs[v] for v in args.variants if v in runs})
    command = "python benchmarks/ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, backend "
               f"{keras.backend.backend()}, {time.time() - started:.0f} s this invocation")
    write_json_atomic(os.path.join(args.output, "ablation.json"), table)
    with open(os.path.join(args.output, "ablation.md"), "w") as handle:
        handle.write(markdown(table, command, machine))
    bar_plot(table, os.path.join(args.output, "ablation.png"))
    print(markdown(table, command, machine))


if __name__ == "__main__":
    main()
