"""The study runner (`benchmarks/study.py`) and its statistics (`benchmarks/study_stats.py`)."""

import json
import os
import shutil

import numpy as np
import pytest
from scipy import stats

from tests.helpers import load_benchmark
from tests.test_training import ROOT, tiny_overrides

study = load_benchmark("study")
study_stats = load_benchmark("study_stats")


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def test_paired_test_is_the_paired_t_test_with_its_interval():
    rng = np.random.default_rng(0)
    a, b = rng.normal(50, 10, 12), rng.normal(0, 3, 12)
    seeds, d = study_stats.paired(dict(enumerate(a)), dict(enumerate(a - 2 + b)))
    result = study_stats.paired_test(d)
    reference = stats.ttest_rel(a, a - 2 + b)
    assert seeds == list(range(12)) and result["n"] == 12
    assert result["p"] == pytest.approx(reference.pvalue)
    low, high = reference.confidence_interval(0.95)
    assert result["ci"] == pytest.approx((low, high))
    # A seed missing on one side, or None, is not a pair.
    assert study_stats.paired({0: 1.0, 1: 2.0, 2: None}, {0: 0.5, 2: 1.0})[0] == [0]


def test_holm_adjusts_step_down_and_keeps_missing_values():
    adjusted = study_stats.holm([0.01, 0.04, None, 0.03, 0.5])
    # Sorted 0.01, 0.03, 0.04, 0.5 with m = 4: 0.04, 0.09, max(0.09, 0.08), 0.5.
    assert adjusted == pytest.approx([0.04, 0.09, None, 0.09, 0.5], abs=1e-12)


def test_seed_count_reaches_the_power_asked_for():
    # A 3-point difference at paired SD 4: 16 seeds at alpha 0.05, more under Holm.
    assert study_stats.seeds_needed(4.0, 3.0, 0.05) == 16
    n = study_stats.seeds_needed(4.0, 3.0, 0.05 / 7)
    assert study_stats.power(n, 4.0, 3.0, 0.05 / 7) >= 0.8 > study_stats.power(
        n - 1, 4.0, 3.0, 0.05 / 7)
    # Power by simulation agrees with the noncentral t.
    rng = np.random.default_rng(1)
    d = rng.normal(3.0, 4.0, size=(4000, 16))
    simulated = np.mean(stats.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05)
    assert simulated == pytest.approx(study_stats.power(16, 4.0, 3.0, 0.05), abs=0.03)


def test_verdicts():
    assert study_stats.verdict({"mean": 2.0}, 0.01) == "holds"
    assert study_stats.verdict({"mean": -2.0}, 0.01) == "reversed"
    assert study_stats.verdict({"mean": 2.0}, 0.2) == "not shown"


# ---------------------------------------------------------------------------
# The runner, with a stand-in for training
# ---------------------------------------------------------------------------


def small_plan(**extra):
    plan = study.read_plan()
    plan = json.loads(json.dumps(plan))
    plan.update(extra)
    return plan


def fake_runner(calls, fail_at=None):
    """Numbers that depend on (seed, variant) only; raises KeyboardInterrupt at call
    `fail_at` (a run killed half way)."""

    def runner(plan, output, data, seed, variant):
        calls.append((data, seed, variant))
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        value = (seed * 7 + len(variant)) % 10 / 10
        return ({"val_zsl_top1": value, "val_localisation": value / 2, "val_score": value,
                 "val_localisation_at_init": None, "zsl_top1": 0.99, "seconds": 1.0},
                {"zsl_top1": value + 0.05, "localisation": value, "gzsl_h": value})

    return runner


def test_a_study_resumes_where_it_stopped(tmp_path):
    plan, calls = small_plan(), []
    with pytest.raises(KeyboardInterrupt):
        study.run_study(plan, str(tmp_path), "design", [0, 1], ["full", "no_cct"],
                        fake_runner(calls, fail_at=3))
    assert len(study.read_records(tmp_path / study.VALIDATION)) == 2
    calls.clear()
    assert study.run_study(plan, str(tmp_path), "design", [0, 1], ["full", "no_cct"],
                           fake_runner(calls)) == 2
    assert calls == [("design", 1, "full"), ("design", 1, "no_cct")]  # the killed one again
    assert study.run_study(plan, str(tmp_path), "design", [0, 1], ["full", "no_cct"],
                           fake_runner(calls)) == 0
    # Another plan's records are not mixed in.
    other = small_plan(overrides=["train.refit=true"])
    with pytest.raises(study.StudyError, match="runs of another plan"):
        study.run_study(other, str(tmp_path), "design", [0], ["full"], fake_runner([]))


def test_the_choice_reads_no_test_number(tmp_path):
    """Validation and test records go to separate files; only validation keys reach the
    one `choose` reads, and its decisions are the same with the test file gone."""
    plan = small_plan(pilot_seeds=[])
    variants = ["full", "mask_sample_points", "alternate"]
    study.run_study(plan, str(tmp_path), "design", list(range(6)), variants, fake_runner([]))
    validation = study.read_records(tmp_path / study.VALIDATION)
    assert all("zsl_top1" not in r and "localisation" not in r for r in validation)
    assert all("val_score" not in r for r in study.read_records(tmp_path / study.SEALED))
    assert "not chosen yet" in study.report(plan, str(tmp_path))
    first = study.choose(plan, str(tmp_path))
    shutil.rmtree(tmp_path / "sealed")
    assert study.choose(plan, str(tmp_path)) == first
    names = {d["name"]: d for d in first}
    assert names["mask_sample_points"]["n"] == 6 and names["anchor_cnet"]["n"] == 0
    assert "## Options (chosen on validation" in study.report(plan, str(tmp_path))


def test_claims_are_paired_per_seed_and_pilots_left_out(tmp_path):
    plan = small_plan()
    records = []
    rng = np.random.default_rng(0)
    for seed in [*range(10), 900]:
        base = rng.uniform(0.3, 0.6)
        for variant, shift in (("full", 0.05), ("random", 0.0)):
            records.append({"data": "design", "seed": seed, "variant": variant,
                            "localisation": base + shift + rng.normal(0, 0.005),
                            "localisation_at_init": base})
    rows = study.compare(records, "design", plan["claims"]["comparisons"][:1], 0.05, {900})
    assert rows[0]["n"] == 10 and rows[0]["verdict"] == "holds"
    assert rows[0]["mean"] == pytest.approx(5.0, abs=0.5)  # points
    at_init = study.compare(records, "design", plan["claims"]["comparisons"][5:6], 0.05)
    assert at_init[0]["n"] == 11 and at_init[0]["mean"] == pytest.approx(5.0, abs=0.5)


def test_a_bad_plan_is_one_line(tmp_path):
    plan = json.loads(open(study.PLAN).read())
    plan["variants"]["full"]["start"] = "joint"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    with pytest.raises(study.StudyError, match="variants.full.start must be"):
        study.read_plan(str(path))
    plan = small_plan()
    assert study.seed_list(plan, ["plan"]) == list(range(plan["seeds"]["count"]))
    plan["seeds"]["count"] = None
    with pytest.raises(study.StudyError, match="seeds.count is not set"):
        study.seed_list(plan, ["plan"])


# ---------------------------------------------------------------------------
# Real runs: two invocations give the same numbers
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_two_invocations_give_identical_numbers(tmp_path, monkeypatch):
    """A tiny plan (the demo config at test size): the shared start, a joint-stage
    variant and a warm-up one, run twice into two folders, agree to the last digit;
    the second time in the other order, so a run's numbers do not depend on what its
    process ran before (a study resumed in a new process)."""
    plan = small_plan()
    plan["config"] = "configs/demo.json"
    data_dir = tmp_path / "data"
    plan["overrides"] = [o for o in tiny_overrides(tmp_path, data_dir) if not
                         o.startswith("output_dir=")] + ["train.refit=false"]
    plan["data_seeds"] = {"design": 0}
    monkeypatch.setenv("TF_DETERMINISTIC_OPS", "1")
    results = []
    for name, variants in (("first", ["full", "no_cpt_div", "global"]),
                           ("second", ["global", "no_cpt_div", "full"])):
        output = str(tmp_path / name)
        study.run_study(plan, output, "design", [3], variants)
        records = study.read_records(os.path.join(output, study.VALIDATION))
        tests = study.read_records(os.path.join(output, study.SEALED))
        for r in records:
            r.pop("seconds")
        results.append(({r["variant"]: r for r in records}, {r["variant"]: r for r in tests}))
    assert results[0] == results[1]
    records = results[0][0]
    assert records["full"]["val_localisation_at_init"] is not None
    assert records["global"]["val_localisation"] is None


def test_choose_and_report_wait_for_every_planned_run(tmp_path, capsys):
    """`status` counts runs without reading a metric; `choose` and `report` refuse until
    the plan's seeds are all run (no interim look)."""
    plan = small_plan(seeds={"first": 0, "least": 2, "most": 2, "count": 2})
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))
    output = str(tmp_path / "out")
    variants = list(plan["variants"])
    study.run_study(plan, output, "design", [0], variants, fake_runner([]))
    study.run_study(plan, output, "design", [1], variants[:3], fake_runner([]))
    rows = {r["data"]: r for r in study.progress(plan, output)}
    assert (rows["design"]["runs"], rows["design"]["planned"]) == (len(variants) + 3,
                                                                   2 * len(variants))
    assert rows["design"]["whole_seeds"] == 1 and rows["confirm"]["runs"] == 0
    args = ["--plan", str(plan_path), "--output", output]
    study.main(["status", *args])
    assert "design: 13 of 20 runs, 1 of 2 seeds whole" in capsys.readouterr().out
    with pytest.raises(study.StudyError, match="design data seed has 13 of the plan's 20"):
        study.main(["choose", *args])
    study.run_study(plan, output, "design", [1], variants, fake_runner([]))
    study.main(["choose", *args])  # design complete: the choice may be made
    with pytest.raises(study.StudyError, match="confirm data seed has 0 of"):
        study.main(["report", *args])


def test_the_report_page(tmp_path):
    """The report: each claim on each data seed with its interval, the seeds its power
    calculation asks for and "underpowered" where the plan has fewer; after the choice,
    the options' decisions beside their test differences, every variant's means, and
    the runtime from the runs' times and the starts' folders."""
    plan = small_plan(seeds={"first": 0, "least": 2, "most": 3, "count": 3},
                      pilot_seeds=[900, 901, 902])
    output = str(tmp_path)
    variants = list(plan["variants"])
    study.run_study(plan, output, "design", [900, 901, 902, 0, 1, 2], variants,
                    fake_runner([]))
    study.run_study(plan, output, "confirm", [0, 1, 2], variants, fake_runner([]))
    start = tmp_path / "runs" / "design" / "seed0" / "start"
    start.mkdir(parents=True)
    for name, when in (("config.json", 1000), ("state.json", 1036)):
        (start / name).write_text("{}")
        os.utime(start / name, (when, when))
    before = study.report(plan, output)
    assert "not chosen yet" in before and "## Every variant" not in before
    study.choose(plan, output)
    page = study.report(plan, output)
    for data, number in (("design", 0), ("confirm", 101)):
        assert f"## Claims, data seed {number} ({data})" in page
        assert f"## Every variant, data seed {number} ({data})" in page
    records = study.merged_records(output)
    claim = study.compare(records, "confirm", plan["claims"]["comparisons"][:1], 0.05)[0]
    row = next(line for line in page.splitlines()
               if line.startswith(f"| {claim['statement']} |"))
    assert study._interval(claim) in page.split("(confirm)")[1]
    assert "| 3 |" in row
    needed, short = study.seeds_needed_by_name(plan, records)
    assert needed[claim["name"]] in row
    assert ("underpowered" in row) == (claim["verdict"] == "not shown" and short[claim["name"]])
    # The options' rows carry their test differences (design, the pilot left out).
    test = study.compare(records, "design", [{**plan["options"]["comparisons"][1],
                                              "metric": "zsl_top1"}], 0.05, {900, 901, 902})
    option_row = next(line for line in page.splitlines()
                      if line.startswith("| mask_sample_points |"))
    assert study._interval(test[0]) in option_row
    assert "| anchor_cnet (the paper) |" in page
    # The verdicts table: each claim's verdict and interval on both data seeds.
    verdicts = page.split("## Verdicts")[1].split("## Claims")[0]
    design = study.compare(records, "design", plan["claims"]["comparisons"][:1], 0.05,
                           {900, 901, 902})[0]
    assert (f"| {claim['statement']} ({claim['metric']}) | "
            f"{study._verdict(design, short)}: {study._interval(design)} | "
            f"{study._verdict(claim, short)}: {study._interval(claim)} |") in verdicts
    # Every variant's means: the plan's seeds only (pilot left out), in %.
    zsl = [100 * r["zsl_top1"] for r in records
           if r["data"] == "design" and r["variant"] == "full" and r["seed"] in (0, 1, 2)]
    design_means = page.split("## Every variant, data seed 0 (design)")[1].split("##")[0]
    assert f"| full | {np.mean(zsl):.1f} ± {np.std(zsl, ddof=1):.1f} |" in design_means
    # Runtime: 30 runs with 1 s each per data seed, one start of 36 s.
    assert "| design | 30 | 0.01 | 1 | 0.01 |" in page
    assert "| confirm | 30 | 0.01 | 0 | 0.00 |" in page


def _put_many(path, data, count, start):
    start.wait(60)  # both processes write at the same time
    for seed in range(count):
        study.put_record(path, {"data": data, "seed": seed, "variant": "full"})


def test_two_processes_recording_at_once_lose_no_record(tmp_path):
    """Two studies on other data seeds share the record files: each addition is a
    read-modify-write, done under a lock."""
    import multiprocessing

    pytest.importorskip("fcntl")  # the lock is POSIX's flock
    path = str(tmp_path / "validation.json")
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=_put_many, args=(path, data, 150, start))
               for data in ("design", "confirm")]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert len(study.read_records(path)) == 300
