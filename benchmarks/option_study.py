"""The localisation mechanism's options, measured on the built-in dataset and chosen
on validation (issue 14).

Each option is one change from the current defaults, trained as the full SGMA
(`benchmarks/ablation.py`'s `full` variant) with several seeds:

    python benchmarks/option_study.py --config configs/ablation.json --seeds 0 1 2 \\
        --output results/options

For every run it records the test results (ZSL top-1, GZSL H, part localisation at
the end of the init stage and at the selected checkpoint) and the validation ones
(ZSL top-1 of the selected checkpoint, part localisation on the validation classes'
images, at init and final). The choice uses the validation keys only:

    score = (validation ZSL top-1 + validation part localisation) / 2

and an option replaces the default when the mean of its paired differences to the
default (same seed, same data) is positive and larger than its standard error
(sample sd / sqrt(seeds)). A combination of adopted options replaces a smaller one by
the same rule against it (`COMPARE`). Studies
resume: runs already recorded in `<output>/runs.json` are kept, and a finished run
folder is re-evaluated rather than retrained.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Where the study started: the defaults before it (it chose the two it flips in
# `adopted_unanimous` as the new defaults). Pinned, so the study reruns as it ran.
START = ["model.cropper.peak_gradient_temperature=0.2", "model.map_losses_reach_backbone=true"]
# name -> (--set overrides on top of START, what it changes).
OPTIONS = {
    "default": ([], "the defaults before the study (straight-through peak gradient 0.2, "
                    "map losses reach the backbone)"),
    "mask_at_sample_points": (["model.cropper.mask_at=sample_points"],
                              "boxcar mask at the sample points (0.1.0: no gradient to the box)"),
    "no_peak_gradient": (["model.cropper.peak_gradient_temperature=null"],
                         "no straight-through peak gradient"),
    "anchor_cnet": (["model.cropper.anchor=cnet"], "box centre predicted by f_CNet alone (the paper)"),
    "steepness_relative": (["model.cropper.steepness_unit=relative"],
                           "boxcar steepness in image-side units (broad edges)"),
    "maps_not_backbone": (["model.map_losses_reach_backbone=false"],
                          "L_cpt + L_div train the attention subnet only"),
    "alternate": (["train.joint.schedule=alternate"],
                  "attention subnet and the rest in turns of one epoch"),
    # The options adopted one at a time, then together: a combination is chosen by the
    # same rule, since options that each help need not help together.
    "adopted_unanimous": (["model.cropper.peak_gradient_temperature=null",
                           "model.map_losses_reach_backbone=false"],
                          "no_peak_gradient + maps_not_backbone (3/3 paired wins each)"),
    "adopted_significant": (["model.cropper.peak_gradient_temperature=null",
                             "model.map_losses_reach_backbone=false",
                             "model.cropper.mask_at=sample_points"],
                            "every option whose paired gain beats its standard error "
                            "(adopted_unanimous + mask_at_sample_points)"),
    "adopted_all": (["model.cropper.peak_gradient_temperature=null",
                     "model.map_losses_reach_backbone=false",
                     "model.cropper.mask_at=sample_points", "train.joint.schedule=alternate"],
                    "every option adopted alone (adds mask_at_sample_points and alternate, "
                    "2/3 wins each)"),
}
# (larger combination, smaller one): the larger is chosen only if it beats the smaller.
COMPARE = (("adopted_significant", "adopted_unanimous"), ("adopted_all", "adopted_unanimous"))
KEYS = ("val_zsl_top1", "val_localisation_at_init", "val_localisation", "zsl_top1", "gzsl_h",
        "localisation_at_init", "localisation")


def score(run):
    """The validation score an option is chosen by (None if a key is missing)."""
    zsl, loc = run.get("val_zsl_top1"), run.get("val_localisation")
    return None if zsl is None or loc is None else (zsl + loc) / 2


def summarise(runs):
    """{option: {key: (mean, sample sd), "score": ..., "seeds": n}}."""
    import numpy as np

    table = {}
    for name, records in runs.items():
        row = {"seeds": len(records)}
        for key in KEYS + ("score",):
            values = [score(r) if key == "score" else r.get(key) for r in records]
            values = [v for v in values if v is not None]
            row[key] = ((float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1
                         else 0.0) if values else None)
        table[name] = row
    return table


def paired(runs, name, against):
    """Per-seed score differences `name` - `against` (seeds both have)."""
    base = {r["seed"]: score(r) for r in runs.get(against, [])}
    return [score(r) - base[r["seed"]] for r in runs.get(name, [])
            if base.get(r["seed"]) is not None and score(r) is not None]


def verdict(differences):
    """Adopt when the mean paired difference is positive and beats its standard error."""
    import numpy as np

    n = len(differences)
    mean = float(np.mean(differences)) if n else 0.0
    se = float(np.std(differences, ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    return {"adopt": bool(n > 1 and mean > se), "paired_differences": list(differences),
            "mean": mean, "standard_error": se,
            "wins": int(sum(d > 0 for d in differences))}


def choose(runs, table=None):
    """Each option against the default, by the rule of the module docstring."""
    return {name: verdict(paired(runs, name, "default"))
            for name in runs if name != "default" and "default" in runs}


def markdown(table, verdicts, command, machine, compare=None):
    compare = compare or {}
    def cell(value):
        return "n/a" if value is None else f"{100 * value[0]:.1f} ± {100 * value[1]:.1f}"

    def arrow(row, start, end):
        if row[start] is None or row[end] is None:
            return cell(row[end])
        return f"{cell(row[start])} → {cell(row[end])}"

    lines = [
        "| option | what it changes | validation score | val ZSL top-1 | val localisation "
        "init → final | test ZSL top-1 | test GZSL H | test localisation init → final | "
        "seeds | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        verdict = verdicts.get(name)
        text = ("current default" if name == "default" else
                "n/a" if verdict is None else
                f"{'adopt' if verdict['adopt'] else 'keep default'} "
                f"({100 * verdict['mean']:+.1f} ± {100 * verdict['standard_error']:.1f}, "
                f"{verdict['wins']}/{len(verdict['paired_differences'])} paired wins)")
        lines.append(
            f"| {name} | {OPTIONS[name][1]} | {cell(row['score'])} | {cell(row['val_zsl_top1'])} | "
            f"{arrow(row, 'val_localisation_at_init', 'val_localisation')} | "
            f"{cell(row['zsl_top1'])} | {cell(row['gzsl_h'])} | "
            f"{arrow(row, 'localisation_at_init', 'localisation')} | {row['seeds']} | {text} |")
    lines += ["", "Combinations against the smaller one (paired validation score "
              "difference, mean ± standard error):", ""]
    for larger, smaller in compare:
        lines.append(f"- {larger} vs {smaller}: " + (
            "not measured" if larger not in table or smaller not in table else
            "{} ({:+.1f} ± {:.1f}, {}/{} paired wins)".format(
                "adopt" if compare[(larger, smaller)]["adopt"] else "keep the smaller",
                100 * compare[(larger, smaller)]["mean"],
                100 * compare[(larger, smaller)]["standard_error"],
                compare[(larger, smaller)]["wins"],
                len(compare[(larger, smaller)]["paired_differences"]))))
    lines += ["", f"Command: `{command}`", f"Machine: {machine}",
              "Mean ± sample standard deviation (ddof=1) over seeds, in %. Validation score = "
              "(validation ZSL top-1 + validation part localisation) / 2; verdict: the paired "
              "difference to the default (mean ± standard error); an option is adopted when "
              "the mean is positive and larger than its standard error. Test columns are "
              "reported, never used to choose."]
    return "\n".join(lines) + "\n"


def _trained_seconds(output, seed):
    """The training time `benchmarks/ablation.py` recorded for a reused run folder."""
    path = os.path.join(output, "runs.json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        records = json.load(handle).get("full", [])
    return next((r.get("seconds") for r in records if r.get("seed") == seed), None)


def main(argv=None):
    from ablation import run_variant, start_study, study_parser

    parser = study_parser(__doc__.splitlines()[0], "results/options")
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    args = parser.parse_args(argv)

    import platform

    import keras

    from sgma_keras.atomic_io import write_json_atomic, write_text_atomic

    record_path, runs = start_study(args.output)
    started = time.time()
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    for seed in args.seeds:
        for name in args.options:
            if args.report_only or any(r["seed"] == seed for r in runs.get(name, [])):
                continue
            overrides = START + OPTIONS[name][0]
            result = run_variant(args.config, "full", seed, os.path.join(args.output, name),
                                 overrides)
            result.update(seed=seed, config=args.config, overrides=overrides, machine=machine,
                          backend=keras.backend.backend())
            trained = _trained_seconds(os.path.join(args.output, name), seed)
            if trained is not None:  # the run folder was trained by an earlier invocation
                result["seconds"] = trained
            runs.setdefault(name, []).append(result)
            write_json_atomic(record_path, runs)
            print(f"{name} seed {seed}: " + ", ".join(
                f"{k}={v:.3f}" for k, v in result.items() if isinstance(v, float)), flush=True)
    chosen = {name: runs[name] for name in args.options if name in runs}
    table = summarise(chosen)
    verdicts = choose(chosen)
    compare = {(a, b): verdict(paired(chosen, a, b)) for a, b in COMPARE
               if a in chosen and b in chosen}
    args_given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--report-only"]
    command = "python benchmarks/option_study.py " + " ".join(args_given)
    records = [r for name in chosen for r in chosen[name]]
    machine_line = (f"{machine}, backend {keras.backend.backend()}; {len(records)} runs, "
                    f"{sum(r.get('seconds', 0) for r in records):.0f} s of training and "
                    f"evaluation in all ({time.time() - started:.0f} s this invocation)")
    write_json_atomic(os.path.join(args.output, "study.json"), {
        "table": table, "verdicts": verdicts,
        "combinations": {f"{a} vs {b}": v for (a, b), v in compare.items()}})
    text = markdown(table, verdicts, command, machine_line, compare)
    write_text_atomic(os.path.join(args.output, "study.md"), text)
    print(text)


if __name__ == "__main__":
    main()
