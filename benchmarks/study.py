"""The study of SGMA's claims and localisation options on the built-in data.

A study follows its plan (`docs/study/plan.json`, committed before the runs it judges):
the config, the variants, the comparisons and their metrics, the test and its
correction, and how many seeds. The steps:

    python benchmarks/study.py run --seeds pilot      # the pilot: paired SDs only
    python benchmarks/study.py power                  # seeds each comparison needs
    python benchmarks/study.py run --seeds plan       # the design data seed
    python benchmarks/study.py run --seeds plan --data confirm   # a fresh data seed
    python benchmarks/study.py status                 # runs done, time left (no numbers)
    python benchmarks/study.py choose                 # options, on validation only
    python benchmarks/study.py report                 # claims and choices, with intervals

Each run is deterministic (`TF_DETERMINISTIC_OPS=1`, `input.deterministic=true`), so
the same arguments give the same numbers. Per seed, every variant starts from one
shared run: the plan's `start` run is trained through warm-up and init once, and
each variant forks from its init (variants that change only the joint stage) or its
warm-up (variants that change the parts or skip init), so a paired difference holds
no spread of initial weights or data order.

Resumable: a finished run is recorded and skipped when the study is started again; a
run found unfinished (killed) is deleted and redone whole. Each seed's runs go in a
fresh process. Two `run` commands may share an output if they run other data seeds
(records are written under a lock; on 2 cores the two data seeds at once run about 1.4x
as many runs an hour as one). Validation numbers go to
`<output>/validation.json`, test numbers to `<output>/sealed/test.json`; `choose`
reads the validation file only, and `report` prints test columns of the options only
after the choice is written.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import study_stats  # noqa: E402

PLAN = os.path.join(ROOT, "docs", "study", "plan.json")
VALIDATION = "validation.json"
SEALED = os.path.join("sealed", "test.json")
CHOICES = "choices.json"
# What a record holds, beside its key: read by the choice (validation) or not.
VALIDATION_KEYS = ("val_zsl_top1", "val_localisation", "val_localisation_at_init", "val_score")
TEST_KEYS = ("zsl_top1", "gzsl_u", "gzsl_s", "gzsl_h", "localisation", "localisation_at_init")


class StudyError(SystemExit):
    """A study that cannot go on (bad plan, other plan's records): one line."""


# ---------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------


def read_plan(path=PLAN):
    try:
        with open(path) as handle:
            plan = json.load(handle)
    except (OSError, ValueError) as error:
        raise StudyError(f"{path}: cannot read the study plan ({error}).") from None
    variants = plan.get("variants", {})
    for variant, spec in variants.items():
        if spec.get("start") not in ("warmup", "init"):
            raise StudyError(f"{path}: variants.{variant}.start must be 'warmup' or "
                             f"'init'; got {spec.get('start')!r}.")
    for family in ("claims", "options"):
        for comparison in plan.get(family, {}).get("comparisons", []):
            for side in ("better", "worse"):
                name = comparison[side].split("@")[0]
                if name not in variants:
                    raise StudyError(f"{path}: {family} comparison {comparison['name']!r} "
                                     f"names variant {name!r}, not in variants.")
    return plan


def plan_digest(plan):
    """What a record is checked against: the plan's parts that change a run."""
    made = {key: plan[key] for key in ("config", "overrides", "environment", "variants",
                                       "data_seeds", "start")}
    return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()[:16]


def seed_list(plan, which):
    """--seeds: "pilot", "plan" (first .. first + count - 1 of plan["seeds"]) or ints."""
    if which == ["pilot"]:
        return list(plan["pilot_seeds"])
    if which == ["plan"]:
        count = plan["seeds"].get("count")
        if count is None:
            raise StudyError("the plan's seeds.count is not set yet: run `study.py power` "
                             "on the pilot and commit the count it prints.")
        return list(range(plan["seeds"]["first"], plan["seeds"]["first"] + count))
    try:
        return [int(s) for s in which]
    except ValueError:
        raise StudyError(f"--seeds: expected 'pilot', 'plan' or integers; got {which}.") from None


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


def read_records(path):
    if not os.path.exists(path):
        return []
    try:
        with open(path) as handle:
            records = json.load(handle)
    except ValueError as error:
        raise StudyError(f"{path}: not a study record ({error}); move it away.") from None
    if not isinstance(records, list):
        raise StudyError(f"{path}: expected a list of runs; move it away.")
    return records


def record_key(record):
    return (record["data"], record["seed"], record["variant"])


def put_record(path, record):
    """Adds `record` to the list at `path`, replacing one with its key (atomically, and
    under a lock: two studies may run other data seeds or seeds into one output)."""
    from sgma_keras.atomic_io import exclusive_lock, write_json_atomic

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with exclusive_lock(f"{path}.lock"):
        records = [r for r in read_records(path) if record_key(r) != record_key(record)]
        write_json_atomic(path, records + [record])


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


def deterministic_environment(plan):
    """The plan's environment (TF_DETERMINISTIC_OPS=1), set before TensorFlow loads."""
    for key, value in plan.get("environment", {}).items():
        os.environ[key] = str(value)


def run_config(plan, variant, data, seed, run_dir):
    from sgma_keras.config import load_config

    spec = plan["variants"][variant] if variant != "start" else plan["start"]
    overrides = (list(plan["overrides"]) + list(spec["overrides"])
                 + [f"data.seed={plan['data_seeds'][data]}", f"seed={seed}",
                    f"output_dir={run_dir}", "train.tensorboard=false"])
    return load_config(os.path.join(ROOT, plan["config"]), overrides)


def _finished(run_dir, last_stage):
    from sgma_keras.workflow.run_folder import RunFolder

    return last_stage in RunFolder(run_dir).completed()


def run_one(plan, output, data, seed, variant):
    """Trains (the shared start if needed, then) one variant; returns (validation, test)."""
    from sgma_keras.workflow import training
    from sgma_keras.workflow.fork import fork_run

    seed_dir = os.path.join(output, "runs", data, f"seed{seed}")
    start_dir = os.path.join(seed_dir, "start")
    run_dir = os.path.join(seed_dir, variant)
    start_cfg = run_config(plan, "start", data, seed, start_dir)
    if not _finished(start_dir, "init"):
        shutil.rmtree(start_dir, ignore_errors=True)  # a killed start is redone whole
        training.train(start_cfg, verbose=0, stop_after="init")
    shutil.rmtree(run_dir, ignore_errors=True)  # a killed run is redone whole
    cfg = run_config(plan, variant, data, seed, run_dir)
    started = time.time()
    fork_run(start_dir, cfg, plan["variants"][variant]["start"])
    results = training.train(cfg, verbose=0)
    seconds = round(time.time() - started, 1)
    validation, test = run_metrics(cfg, results)
    validation["seconds"] = seconds
    return validation, test


def mean_hit_rate(localisation):
    """Mean over parts of the share of images whose box holds the part's centre."""
    rates = [r for r in (localisation or {}).get("part_hit_rate", []) if r is not None]
    return sum(rates) / len(rates) if rates else None


def run_metrics(cfg, results):
    """(validation, test) numbers of a finished run.

    Validation: the fused validation ZSL of the scored model (the gamma_cc choice's),
    and part localisation on every image of the validation classes, final and right
    after init. Test: ZSL, GZSL, part localisation of the scored model and after init.
    """
    import keras

    from sgma_keras.workflow.build import build_model, load_data
    from sgma_keras.workflow.checkpoints import load_weights_quietly
    from sgma_keras.workflow.evaluation import split_localisation
    from sgma_keras.workflow.protocol import protocol
    from sgma_keras.workflow.run_folder import RunFolder
    from sgma_keras.workflow.selection import CHOICES_FILE

    folder = RunFolder(cfg["output_dir"])
    with open(os.path.join(folder.checkpoints, CHOICES_FILE)) as handle:
        choices = json.load(handle)
    data = load_data(cfg)
    final = keras.models.load_model(folder.final, compile=False)
    validation = {"val_zsl_top1": choices["gamma_cc"]["val_zsl"],
                  "val_localisation": mean_hit_rate(split_localisation(final, data, cfg, ("val",))),
                  "val_localisation_at_init": None}
    # What the options are chosen by; without parts, validation ZSL alone.
    validation["val_score"] = (validation["val_zsl_top1"] if validation["val_localisation"] is None
                               else (validation["val_zsl_top1"] + validation["val_localisation"]) / 2)
    test = {key: results.get(key) for key in ("zsl_top1", "gzsl_u", "gzsl_s", "gzsl_h")}
    test["localisation"] = mean_hit_rate(results.get("part_localisation"))
    test["localisation_at_init"] = None
    if cfg["train"]["init"]["enabled"] and final.cropper is not None:
        model = build_model(cfg, data, protocol(data, cfg["train"], cfg["seed"]).seen_classes)
        size = cfg["input"]["image_size"]
        model.build((None, size, size, 3))
        load_weights_quietly(model, folder.stage_weights("init"))
        validation["val_localisation_at_init"] = mean_hit_rate(
            split_localisation(model, data, cfg, ("val",)))
        test["localisation_at_init"] = mean_hit_rate(split_localisation(model, data, cfg))
    return validation, test


def run_study(plan, output, data, seeds, variants, runner=None):
    """Runs what is not recorded yet, seeds outermost (an interrupted study has every
    variant at its first seeds); returns the number of runs made.

    `runner(plan, output, data, seed, variant) -> (validation, test)` runs one variant
    here; None (a study) runs each seed's variants with `run_one` in a fresh process:
    a process that trains run after run grows by about 70 MB a run, which neither
    `keras.backend.clear_session` nor garbage collection gives back. A run's numbers do
    not depend on what its process ran before (tests/test_study.py)."""
    digest = plan_digest(plan)
    validation_path = os.path.join(output, VALIDATION)
    for record in read_records(validation_path):
        if record["plan"] != digest:
            raise StudyError(f"{validation_path}: runs of another plan (digest "
                             f"{record['plan']}, this plan {digest}); use another --output.")
    done = {record_key(r) for r in read_records(validation_path)}
    made = 0
    for seed in seeds:
        todo = [v for v in variants if (data, seed, v) not in done]
        if not todo:
            continue
        if runner is None:
            _seed_in_child(plan, output, data, seed, todo)
            made += len(todo)
            continue
        for variant in todo:
            _record(plan, output, data, seed, variant, *runner(plan, output, data, seed, variant))
            made += 1
    return made


def _record(plan, output, data, seed, variant, validation, test):
    import keras

    # Only validation keys reach the file the choice reads.
    validation = {k: validation.get(k) for k in (*VALIDATION_KEYS, "seconds")}
    test = {k: test.get(k) for k in TEST_KEYS}
    key = {"data": data, "seed": seed, "variant": variant, "plan": plan_digest(plan),
           "backend": keras.backend.backend()}
    # The test record first: the validation record marks the run finished.
    put_record(os.path.join(output, SEALED), {**key, **test})
    put_record(os.path.join(output, VALIDATION), {**key, **validation})
    print(f"{data} seed {seed} {variant}: " + ", ".join(
        f"{k} {v:.3f}" for k, v in validation.items() if isinstance(v, float)), flush=True)


def _seed_in_child(plan, output, data, seed, variants):
    """One seed's variants in a new Python process (this script with `--child`, the
    job on its standard input); it inherits the environment and writes the records."""
    import subprocess

    job = json.dumps({"plan": plan, "output": output, "data": data, "seed": seed,
                      "variants": variants})
    code = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"],
                          input=job, text=True).returncode
    if code != 0:
        raise StudyError(f"study.py: the runs of {data} seed {seed} ended with exit status "
                         f"{code}; start the study again to redo the unfinished run.")


def _child_main():
    job = json.load(sys.stdin)
    deterministic_environment(job["plan"])
    from sgma_keras.workflow.training import main_logging

    main_logging()
    run_study(job["plan"], job["output"], job["data"], [job["seed"]], job["variants"],
              runner=run_one)


# ---------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------


def values(records, data, side, metric):
    """{seed: value} of `side` ("variant" or "variant@init": the variant's
    `<metric>_at_init`) on data seed `data`."""
    variant, _, at = side.partition("@")
    key = f"{metric}_at_{at}" if at else metric
    return {r["seed"]: r.get(key) for r in records
            if r["data"] == data and r["variant"] == variant}


def compare(records, data, comparisons, alpha, exclude_seeds=()):
    """Each comparison's paired test on `data`, with Holm's correction across them."""
    rows = []
    for comparison in comparisons:
        a = values(records, data, comparison["better"], comparison["metric"])
        b = values(records, data, comparison["worse"], comparison["metric"])
        a = {s: v for s, v in a.items() if s not in exclude_seeds}
        seeds, differences = study_stats.paired(a, b)
        rows.append({**comparison, "seeds": seeds,
                     **study_stats.paired_test(100 * differences)})
    for row, adjusted in zip(rows, study_stats.holm([r["p"] for r in rows])):
        row["p_holm"] = adjusted
        row["verdict"] = study_stats.verdict(row, adjusted, alpha)
    return rows


def power_table(plan, records):
    """Seeds each comparison needs, from the pilot's paired SDs (all data seeds' pilots)."""
    rule = plan["power"]
    table = []
    for family in ("claims", "options"):
        comparisons = plan[family]["comparisons"]
        alpha = rule["alpha"] / len(comparisons)  # Holm's strictest step
        for row in compare(records, "design", comparisons, rule["alpha"]):
            needed = (None if row["sd"] is None else
                      study_stats.seeds_needed(row["sd"], rule["delta"], alpha, rule["power"]))
            table.append({"family": family, "name": row["name"], "pilot_seeds": row["n"],
                          "paired_sd": row["sd"], "alpha": alpha, "seeds_needed": needed})
    return table


def choose(plan, output):
    """The options' decisions on the design data seed, from validation records only."""
    from sgma_keras.atomic_io import write_json_atomic

    records = read_records(os.path.join(output, VALIDATION))
    rule = plan["options"]
    pilot = set(plan["pilot_seeds"])
    rows = compare(records, "design", rule["comparisons"], plan["power"]["alpha"], pilot)
    decisions = []
    for row in rows:
        if row["verdict"] == "holds":
            decision = "adopt"
        elif row["verdict"] == "reversed" and not row.get("paper_mechanism"):
            decision = "remove"
        else:
            decision = "keep the default; the option stays"
        decisions.append({**row, "decision": decision})
    write_json_atomic(os.path.join(output, CHOICES), decisions)
    return decisions


def progress(plan, output):
    """Per data seed: the plan's runs recorded, whole seeds, and the mean run time (of
    every recorded run, pilots too; the shared warm-up and init of a seed not counted).
    Counts only: no metric is read, so looking at progress is no interim analysis."""
    records = read_records(os.path.join(output, VALIDATION))
    seeds, variants = seed_list(plan, ["plan"]), list(plan["variants"])
    seconds = [r["seconds"] for r in records if r.get("seconds")]
    rows = []
    for data in plan["data_seeds"]:
        done = {(r["seed"], r["variant"]) for r in records if r["data"] == data}
        rows.append({"data": data, "runs": sum((s, v) in done for s in seeds for v in variants),
                     "planned": len(seeds) * len(variants),
                     "whole_seeds": sum(all((s, v) in done for v in variants) for s in seeds),
                     "seeds": len(seeds),
                     "seconds_per_run": sum(seconds) / len(seconds) if seconds else None})
    return rows


def require_complete(plan, output, data_seeds, step):
    """`choose` and `report` judge the plan's seeds, all of them: a look at fewer would
    be an interim analysis the plan does not make."""
    for row in progress(plan, output):
        if row["data"] in data_seeds and row["runs"] < row["planned"]:
            raise StudyError(f"{step}: the {row['data']} data seed has {row['runs']} of the "
                             f"plan's {row['planned']} runs; finish them first "
                             f"(`study.py run --seeds plan --data {row['data']}`).")


def _interval(row):
    if row["ci"] is None:
        return "n/a"
    return f"{row['mean']:+.1f} [{row['ci'][0]:+.1f}, {row['ci'][1]:+.1f}]"


def _verdict(row, underpowered):
    """The row's verdict; "not shown" marked where the plan's seeds are fewer than its
    power calculation asked for."""
    if row["verdict"] == "not shown" and underpowered[row["name"]]:
        return "not shown (underpowered)"
    return row["verdict"]


def _p(value):
    return "n/a" if value is None else f"{value:.3g}"


def merged_records(output):
    """Validation and test numbers of each run in one dict (for the report only: the
    choice reads the validation file alone)."""
    merged = {record_key(r): dict(r) for r in read_records(os.path.join(output, SEALED))}
    for r in read_records(os.path.join(output, VALIDATION)):
        merged.setdefault(record_key(r), {}).update(r)
    return list(merged.values())


def start_seconds(output, data, seed):
    """Seconds the seed's shared start (warm-up and init) took: from its config's
    writing to the end of init (file times; None if the folder is gone)."""
    start_dir = os.path.join(output, "runs", data, f"seed{seed}", "start")
    try:
        return (os.path.getmtime(os.path.join(start_dir, "state.json"))
                - os.path.getmtime(os.path.join(start_dir, "config.json")))
    except OSError:
        return None


def runtime(plan, output, records):
    """Per data seed: the plan's runs' own seconds and their seeds' starts' seconds."""
    seeds = seed_list(plan, ["plan"])
    rows = []
    for data in plan["data_seeds"]:
        runs = [r["seconds"] for r in records
                if r["data"] == data and r["seed"] in seeds and r.get("seconds")]
        starts = [t for t in (start_seconds(output, data, s) for s in seeds) if t is not None]
        rows.append({"data": data, "runs": len(runs), "run_seconds": sum(runs),
                     "starts": len(starts), "start_seconds": sum(starts)})
    return rows


def seeds_needed_by_name(plan, records):
    """{comparison name: text of the seeds its power calculation asks for, from the
    pilot seeds} and {name: True where the plan's seeds are fewer}."""
    pilot = [r for r in records if r["seed"] in plan["pilot_seeds"]]
    count = len(seed_list(plan, ["plan"]))
    text, short = {}, {}
    for row in power_table(plan, pilot):
        if row["paired_sd"] is None:
            text[row["name"]], short[row["name"]] = "no pilot", False
        else:
            need = row["seeds_needed"]
            text[row["name"]] = "over 200" if need is None else str(need)
            short[row["name"]] = need is None or need > count
    return text, short


# The report's per-variant columns: record key -> heading.
MEAN_COLUMNS = {"zsl_top1": "ZSL top-1", "gzsl_h": "GZSL H",
                "localisation_at_init": "localisation after init", "localisation": "localisation",
                "val_zsl_top1": "val ZSL top-1", "val_localisation": "val localisation"}


def variant_means(records, data, seeds, variants):
    """Per variant: {metric: (mean, SD) or None} in %, over `seeds` on `data`."""
    table = {}
    for variant in variants:
        rows = [r for r in records if r["data"] == data and r["variant"] == variant
                and r["seed"] in seeds]
        table[variant] = {}
        for metric in MEAN_COLUMNS:
            found = [100 * r[metric] for r in rows if r.get(metric) is not None]
            table[variant][metric] = ((float(np.mean(found)), float(np.std(found, ddof=1)))
                                      if len(found) > 1 else None)
    return table


def _mean_sd(cell):
    return "n/a" if cell is None else f"{cell[0]:.1f} ± {cell[1]:.1f}"


def report(plan, output):
    """Markdown, the study's results page: the claims on each data seed, with the seeds
    each one's power calculation asked for; then, once `choices.json` exists, the
    options' decisions beside their test differences, every variant's means and the
    study's runtime. Before the choice, no test number of an option is shown."""
    records = merged_records(output)
    pilot = set(plan["pilot_seeds"])
    seeds = seed_list(plan, ["plan"])
    alpha = plan["power"]["alpha"]
    needed, underpowered = seeds_needed_by_name(plan, records)
    delta = plan["power"]["delta"]
    lines = ["# Study report", "",
             f"Generated by `python benchmarks/study.py report` from the runs of plan "
             f"{plan_digest(plan)} ([`docs/study/plan.md`](../study/plan.md)): seeds "
             f"{seeds[0]}-{seeds[-1]} on each data seed, every variant forked from the "
             f"seed's shared warm-up and init, deterministic TensorFlow.", "",
             f"Paired differences (first minus second variant, points), mean and 95% t "
             f"interval over the seeds; two-sided paired t-test, Holm-corrected within each "
             f"family at alpha {alpha}. \"seeds needed\": the paired t-test's seed count "
             f"for power {plan['power']['power']} at a {delta:g}-point difference, from the "
             f"pilot's paired SD (seeds {sorted(pilot)}, left out of every comparison); "
             f"a claim with fewer seeds than that is underpowered at {delta:g} points "
             f"(\"not shown\" there does not say the effect is absent).", ""]
    claims = {data: compare(records, data, plan["claims"]["comparisons"], alpha, pilot)
              for data in plan["data_seeds"]}
    lines += ["## Verdicts", "",
              "| claim | " + " | ".join(f"{data} (data seed {number})" for data, number
                                      in plan["data_seeds"].items()) + " |",
              "|---|" + "---|" * len(plan["data_seeds"])]
    for index, comparison in enumerate(plan["claims"]["comparisons"]):
        cells = []
        for data in plan["data_seeds"]:
            r = claims[data][index]
            cells.append(f"{_verdict(r, underpowered)}: {_interval(r)}")
        lines.append(f"| {comparison['statement']} ({comparison['metric']}) | "
                     + " | ".join(cells) + " |")
    lines.append("")
    for data, rows in claims.items():
        if not any(r["n"] for r in rows):
            continue
        lines += [f"## Claims, data seed {plan['data_seeds'][data]} ({data})", "",
                  "| claim | metric | difference [95% CI] | seeds | seeds needed | p (Holm) "
                  "| verdict |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['statement']} | {r['metric']} | {_interval(r)} | {r['n']} | "
                         f"{needed[r['name']]} | {_p(r['p_holm'])} | "
                         f"{_verdict(r, underpowered)} |")
        lines.append("")
    choices_path = os.path.join(output, CHOICES)
    if not os.path.exists(choices_path):
        lines.append("Options: not chosen yet (`study.py choose`); their test numbers are "
                     "not shown before the choice.")
        return "\n".join(lines) + "\n"
    with open(choices_path) as handle:
        decisions = json.load(handle)
    tests = {}
    for metric in ("zsl_top1", "localisation"):
        comparisons = [{**c, "metric": metric} for c in plan["options"]["comparisons"]]
        for row in compare(records, "design", comparisons, alpha, pilot):
            tests[(row["name"], metric)] = row
    lines += ["## Options (chosen on validation, design data seed)", "",
              "Each option minus `full`; chosen by `val_score` (the mean of validation ZSL "
              "and validation localisation). The test differences were written where the "
              "choice could not read them and are shown after it, uncorrected, for "
              "description only.", "",
              "| option | validation difference [95% CI] | seeds | seeds needed | p (Holm) | "
              "decision | test ZSL difference | test localisation difference |",
              "|---|---|---|---|---|---|---|---|"]
    for d in decisions:
        lines.append(f"| {d['name']}{' (the paper)' if d.get('paper_mechanism') else ''} | "
                     f"{_interval(d)} | {d['n']} | {needed[d['name']]} | "
                     f"{_p(d['p_holm'])} | {d['decision']} | "
                     f"{_interval(tests[(d['name'], 'zsl_top1')])} | "
                     f"{_interval(tests[(d['name'], 'localisation')])} |")
    lines.append("")
    for data in plan["data_seeds"]:
        table = variant_means(records, data, seeds, plan["variants"])
        lines += [f"## Every variant, data seed {plan['data_seeds'][data]} ({data})", "",
                  "Mean ± SD over the seeds, in %; test splits unless marked val.", "",
                  "| variant | " + " | ".join(MEAN_COLUMNS.values()) + " |",
                  "|---|" + "---|" * len(MEAN_COLUMNS)]
        for variant, cells in table.items():
            lines.append(f"| {variant} | " + " | ".join(_mean_sd(c) for c in cells.values())
                         + " |")
        lines.append("")
    lines += ["## Runtime", "",
              "| data seed | runs | their training and evaluation (h) | shared starts "
              "| their warm-up and init (h) |", "|---|---|---|---|---|"]
    total = 0.0
    for row in runtime(plan, output, records):
        total += row["run_seconds"] + row["start_seconds"]
        lines.append(f"| {row['data']} | {row['runs']} | {row['run_seconds'] / 3600:.2f} | "
                     f"{row['starts']} | {row['start_seconds'] / 3600:.2f} |")
    lines += ["", f"In all {total / 3600:.1f} hours of one run process's time, the pilot "
                  f"not counted."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("run", "status", "power", "choose", "report"))
    parser.add_argument("--plan", default=PLAN)
    parser.add_argument("--output", default="results/study")
    parser.add_argument("--data", default="design", help="the plan's data seed: design or confirm")
    parser.add_argument("--seeds", nargs="+", default=["plan"],
                        help="pilot, plan, or seed numbers")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="a subset of the plan's variants (default: all)")
    args = parser.parse_args(argv)
    plan = read_plan(args.plan)
    if args.step == "run":
        deterministic_environment(plan)  # inherited by the runs' processes
        if args.data not in plan["data_seeds"]:
            raise StudyError(f"--data {args.data}: expected one of {list(plan['data_seeds'])}.")
        variants = args.variants or list(plan["variants"])
        unknown = sorted(set(variants) - set(plan["variants"]))
        if unknown:
            raise StudyError(f"--variants: {unknown} are not in the plan's variants.")
        started = time.time()
        made = run_study(plan, args.output, args.data, seed_list(plan, args.seeds), variants)
        print(f"{made} runs in {time.time() - started:.0f} s", flush=True)
    elif args.step == "power":
        records = read_records(os.path.join(args.output, SEALED))
        validation = {record_key(r): r for r in read_records(os.path.join(args.output, VALIDATION))}
        records = [{**r, **validation.get(record_key(r), {})} for r in records
                   if r["seed"] in plan["pilot_seeds"]]
        table = power_table(plan, records)
        for row in table:
            sd = "n/a" if row["paired_sd"] is None else f"{row['paired_sd']:.2f}"
            print(f"{row['family']:8s} {row['name']:28s} pilot n {row['pilot_seeds']:2d}  "
                  f"paired SD {sd:>6s}  seeds needed {row['seeds_needed']}")
        needed = [r["seeds_needed"] for r in table if r["family"] == "claims"]
        known = [n for n in needed if n is not None]
        rule = plan["seeds"]
        count = min(rule["most"], max([rule["least"], *known]))
        print(f"seeds.count = {count} (claims: the largest need, within "
              f"[{rule['least']}, {rule['most']}])")
    elif args.step == "status":
        for row in progress(plan, args.output):
            left = row["planned"] - row["runs"]
            per = row["seconds_per_run"]
            eta = "" if per is None or not left else f", about {left * per / 3600:.1f} h left"
            print(f"{row['data']}: {row['runs']} of {row['planned']} runs, "
                  f"{row['whole_seeds']} of {row['seeds']} seeds whole{eta}")
    elif args.step == "choose":
        require_complete(plan, args.output, ["design"], "choose")
        for d in choose(plan, args.output):
            print(f"{d['name']}: {_interval(d)}, p (Holm) {d['p_holm']}: {d['decision']}")
    else:
        require_complete(plan, args.output, list(plan["data_seeds"]), "report")
        print(report(plan, args.output))


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        _child_main()
    else:
        main()
