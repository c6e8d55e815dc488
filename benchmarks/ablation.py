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
    "global": ["model.num_parts=0", "model.center=null", "train.init.enabled=false"],
    "random": ["model.cropper.box_source=random", "train.init.enabled=false"],
    "no_cpt_div": ["loss.cpt_weight=0", "loss.div_weight=0"],
    "full": [],
    "no_cct": ["model.center=null"],
}
METRICS = ("zsl_top1", "gzsl_u", "gzsl_s", "gzsl_h", "localisation")
# Also summarised (the table's "init -> final" column, the validation numbers).
EXTRA = ("localisation_at_init", "val_zsl_top1", "val_localisation_at_init", "val_localisation")


def run_variant(config, variant, seed, output, extra_overrides=()):
    """Trains and evaluates one (variant, seed); returns its metrics.

    `extra_overrides` ("key=value" strings) apply to every variant, before
    the variant's own, e.g. a loss-weight sweep over the whole study.
    """
    from sgma_keras.workflow import training
    from sgma_keras.config import load_config

    run_dir = os.path.join(output, "runs", f"{variant}_seed{seed}")
    overrides = list(extra_overrides) + VARIANTS[variant] + [
        # The dataset is the same for every run (the config pins data.seed); the model's varies.
        f"seed={seed}", f"output_dir={run_dir}", "train.tensorboard=false",
    ]
    cfg = load_config(config, overrides)
    started = time.time()
    results = training.train(cfg, verbose=0)
    seconds = round(time.time() - started, 1)
    return {
        "zsl_top1": results["zsl_top1"],
        "gzsl_u": results["gzsl_u"],
        "gzsl_s": results["gzsl_s"],
        "gzsl_h": results["gzsl_h"],
        "localisation": mean_hit_rate(results.get("part_localisation")),
        **localisation_and_validation(cfg),
        "seconds": seconds,
    }


def mean_hit_rate(localisation):
    """Mean over predicted parts of the share of boxes holding a true part centre."""
    rates = [r for r in (localisation or {}).get("part_hit_rate", []) if r is not None]
    return sum(rates) / len(rates) if rates else None


def localisation_and_validation(cfg):
    """What a finished run is chosen and compared by, beside its test results:

    - `localisation_at_init`: test part localisation of the weights at the end of
      the init stage (channel grouping), to compare with the final `localisation`;
    - `val_zsl_top1`: the validation ZSL top-1 of the selected checkpoint (the
      monitor value `best.json` records);
    - `val_localisation`, `val_localisation_at_init`: part localisation on the
      validation classes' images (`data.splits["val"]`), final and at init.

    Defaults are chosen on the validation keys only; the test keys are reported.
    """
    import keras

    from sgma_keras.workflow.build import build_model, load_data
    from sgma_keras.workflow.checkpoints import load_weights_quietly
    from sgma_keras.workflow.evaluation import split_localisation
    from sgma_keras.workflow.protocol import protocol

    checkpoints = os.path.join(cfg["output_dir"], "checkpoints")
    with open(os.path.join(checkpoints, "best.json")) as handle:
        best = json.load(handle)
    out = {"val_zsl_top1": best["value"] if best.get("monitor") == "val_zsl_acc" else None,
           "localisation_at_init": None, "val_localisation": None,
           "val_localisation_at_init": None}
    data = load_data(cfg)
    final = keras.models.load_model(os.path.join(checkpoints, "best.keras"), compile=False)
    out["val_localisation"] = mean_hit_rate(split_localisation(final, data, cfg, ("val",)))
    init_weights = os.path.join(checkpoints, "init.weights.h5")
    if os.path.exists(init_weights):
        model = build_model(cfg, data, protocol(data, cfg["train"], cfg["seed"]).seen_classes)
        size = cfg["input"]["image_size"]
        model.build((None, size, size, 3))
        load_weights_quietly(model, init_weights)
        out["localisation_at_init"] = mean_hit_rate(split_localisation(model, data, cfg))
        out["val_localisation_at_init"] = mean_hit_rate(
            split_localisation(model, data, cfg, ("val",)))
    return out


def summarise(runs):
    import numpy as np

    table = {}
    for variant, per_seed in runs.items():
        row = {}
        for metric in METRICS + EXTRA:
            values = [r[metric] for r in per_seed if r.get(metric) is not None]
            # Sample standard deviation (ddof=1): with 3 seeds the population
            # one would understate the spread by a factor of 1.22.
            spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            row[metric] = (float(np.mean(values)), spread) if values else None
        row["seeds"] = len(per_seed)
        table[variant] = row
    return table


# The paper's claims: (statement, better variant, worse variant, metric).
CLAIMS = (
    ("learned parts localise the annotated parts better than random boxes",
     "full", "random", "localisation"),
    ("global + local beats global only (ZSL top-1)", "full", "global", "zsl_top1"),
    ("compactness + diversity improve localisation", "full", "no_cpt_div", "localisation"),
    ("compactness + diversity improve accuracy (ZSL top-1)", "full", "no_cpt_div", "zsl_top1"),
    ("the class-center triplet loss improves accuracy (ZSL top-1)", "full", "no_cct", "zsl_top1"),
    # variant.metric: one variant against itself, the boxes at the selected checkpoint
    # against the boxes right after init (channel grouping).
    ("joint training moves the boxes onto the parts (full: final vs after init)",
     "full", "full.localisation_at_init", "localisation"),
)


def check_claims(table):
    """Each claim of `CLAIMS` checked on `table`, as Markdown bullet lines.

    A claim holds when the better variant's mean exceeds the worse one's by
    more than two standard deviations of the seed spread (the larger of the
    two); a difference within that band is "not shown".
    """
    lines = []
    for statement, better, worse, metric in CLAIMS:
        better, metric_a = better.split(".") if "." in better else (better, metric)
        worse, metric_b = worse.split(".") if "." in worse else (worse, metric)
        a, b = (table.get(better) or {}).get(metric_a), (table.get(worse) or {}).get(metric_b)
        if a is None or b is None:
            lines.append(f"- {statement}: not measured ({better} or {worse} missing)")
            continue
        gap, band = a[0] - b[0], 2 * max(a[1], b[1])
        verdict = "holds" if gap > band else ("reversed" if gap < -band else "not shown")
        name_a = better if metric_a == metric else f"{better} {metric_a}"
        name_b = worse if metric_b == metric else f"{worse} {metric_b}"
        lines.append(
            f"- {statement}: **{verdict}** ({name_a} {100 * a[0]:.1f} vs {name_b} "
            f"{100 * b[0]:.1f}, difference {100 * gap:+.1f}, 2 sd = {100 * band:.1f})"
        )
    return lines


def markdown(table, command, machine):
    def cell(value):
        return "n/a" if value is None else f"{100 * value[0]:.1f} ± {100 * value[1]:.1f}"

    def init_to_final(row, start, end):
        if row.get(start) is None or row.get(end) is None:
            return cell(row.get(end))
        return f"{cell(row[start])} → {cell(row[end])}"

    lines = [
        "| variant | ZSL top-1 | GZSL u | GZSL s | GZSL H | part localisation | "
        "localisation init → final | val ZSL top-1 | val localisation init → final | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, row in table.items():
        cells = " | ".join(cell(row[m]) for m in METRICS)
        lines.append(
            f"| {variant} | {cells} | {init_to_final(row, 'localisation_at_init', 'localisation')}"
            f" | {cell(row.get('val_zsl_top1'))} | "
            f"{init_to_final(row, 'val_localisation_at_init', 'val_localisation')} | "
            f"{row['seeds']} |")
    lines += ["", f"Command: `{command}`", f"Machine: {machine}",
              "Mean ± sample standard deviation (ddof=1) over seeds, in %. Test splits "
              "unless marked val (the validation classes' images, what a choice may use); "
              "init: the weights right after the init stage (channel grouping).", "",
              "The paper's claims (a claim holds when the difference exceeds two standard "
              "deviations of the seed spread):", ""] + check_claims(table)
    return "\n".join(lines) + "\n"


def bar_plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from sgma_keras.atomic_io import atomic_write

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
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=120), binary=True)
    plt.close(fig)


def check_same_study(record_path, runs, config, overrides):
    """Refuses to resume (or report) runs made with another config or --set."""
    for variant, records in runs.items():
        for record in records:
            # Records written before the study settings were recorded pass.
            made_with = (record.get("config", config), record.get("overrides", overrides))
            if made_with != (config, overrides):
                raise SystemExit(
                    f"{record_path}: {variant} seed {record['seed']} was made with --config "
                    f"{made_with[0]} --set {made_with[1]}, not --config {config} --set "
                    f"{overrides}. Use another --output for another study."
                )


def read_runs(record_path):
    """The runs a study recorded so far ({} for a new study), or a named error."""
    if not os.path.exists(record_path):
        return {}
    with open(record_path) as handle:
        try:
            runs = json.load(handle)
        except ValueError as error:
            raise SystemExit(f"{record_path}: not the JSON record of a study ({error}); "
                             "move it away or use another --output.") from None
    if not isinstance(runs, dict):
        raise SystemExit(f"{record_path}: expected an object {{variant: [runs]}}, "
                         f"got {type(runs).__name__}; use another --output.")
    return runs


def describe_machine(records, this_machine, this_backend, elapsed):
    """Where and how long the recorded runs trained (not just this invocation)."""
    machines = sorted({r.get("machine", this_machine) for r in records}) or [this_machine]
    backends = sorted({r.get("backend", this_backend) for r in records}) or [this_backend]
    seconds = sum(r.get("seconds", 0.0) for r in records)
    return (f"{'; '.join(machines)}, backend {', '.join(backends)}; {len(records)} runs, "
            f"{seconds:.0f} s of training and evaluation in all ({elapsed:.0f} s this invocation)")


def study_parser(description, output):
    """The arguments every study script takes (config, seeds, output, report-only)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default="configs/ablation.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", default=output)
    parser.add_argument("--report-only", action="store_true",
                        help="summarise the runs recorded so far without training more")
    return parser


def start_study(output):
    """Logging, the output folder and the runs recorded there so far."""
    from sgma_keras.workflow.training import main_logging

    main_logging()
    os.makedirs(output, exist_ok=True)
    record_path = os.path.join(output, "runs.json")
    return record_path, read_runs(record_path)


def main(argv=None):
    parser = study_parser(__doc__.splitlines()[0], "results/ablation")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value in every variant, e.g. --set "
                             "loss.cpt_weight=0.1 (repeatable; use a new --output)")
    args = parser.parse_args(argv)

    import platform

    import keras

    from sgma_keras.atomic_io import write_json_atomic, write_text_atomic

    record_path, runs = start_study(args.output)
    check_same_study(record_path, runs, args.config, args.overrides)
    started = time.time()
    this_machine = f"{platform.machine()}, {os.cpu_count()} cores"
    # Seeds outermost: an interrupted study still has every variant at some seeds.
    for seed in args.seeds:
        for variant in args.variants:
            done = [r for r in runs.get(variant, []) if r["seed"] == seed]
            if done or args.report_only:
                continue
            result = run_variant(args.config, variant, seed, args.output, args.overrides)
            result.update(seed=seed, config=args.config, overrides=args.overrides,
                          machine=this_machine, backend=keras.backend.backend())
            runs.setdefault(variant, []).append(result)
            write_json_atomic(record_path, runs)
            print(f"{variant} seed {seed}: " + ", ".join(
                f"{k}={v:.3f}" for k, v in result.items() if isinstance(v, float)), flush=True)
    table = summarise({v: runs[v] for v in args.variants if v in runs})
    # The command that makes the table (--report-only only re-reads it).
    args_given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--report-only"]
    command = "python benchmarks/ablation.py " + " ".join(args_given)
    machine = describe_machine(
        [r for v in args.variants for r in runs.get(v, [])], this_machine,
        keras.backend.backend(), time.time() - started)
    write_json_atomic(os.path.join(args.output, "ablation.json"), table)
    write_text_atomic(os.path.join(args.output, "ablation.md"), markdown(table, command, machine))
    bar_plot(table, os.path.join(args.output, "ablation.png"))
    print(markdown(table, command, machine))


if __name__ == "__main__":
    main()
