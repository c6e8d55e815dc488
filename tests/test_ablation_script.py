"""benchmarks/ablation.py: the summary, the claim checks and resuming a study.

Training itself is covered by test_training.py; here the recorded runs are
made up, so the report logic is tested in a second.
"""

import json

import pytest

from tests.helpers import load_benchmark


@pytest.fixture(scope="module")
def ablation():
    return load_benchmark("ablation")


def _runs(zsl, loc, config="configs/ablation.json", overrides=()):
    """Three made-up seeds per variant: `zsl[v]` and `loc[v]` are their values."""
    runs = {}
    for variant in zsl:
        runs[variant] = [
            dict(zsl_top1=zsl[variant][i], gzsl_u=0.1, gzsl_s=0.3, gzsl_h=0.15,
                 localisation=None if loc[variant] is None else loc[variant][i],
                 seconds=10.0, seed=i, config=config, overrides=list(overrides),
                 machine="x86_64, 2 cores", backend="tensorflow")
            for i in range(3)
        ]
    return runs


ZSL = {"global": [0.50, 0.51, 0.52], "random": [0.50, 0.50, 0.50],
       "no_cpt_div": [0.60, 0.64, 0.68], "full": [0.60, 0.61, 0.62], "no_cct": [0.40, 0.41, 0.42]}
LOC = {"global": None, "random": [0.30, 0.30, 0.30], "no_cpt_div": [0.55, 0.60, 0.65],
       "full": [0.50, 0.50, 0.50], "no_cct": [0.5, 0.5, 0.5]}


def test_summary_uses_the_sample_standard_deviation(ablation):
    table = ablation.summarise(_runs(ZSL, LOC))
    mean, sd = table["no_cpt_div"]["zsl_top1"]
    assert mean == pytest.approx(0.64)
    assert sd == pytest.approx(0.04)  # ddof=1; the population sd would be 0.0327
    assert table["global"]["localisation"] is None
    assert table["full"]["seeds"] == 3


def test_claims_hold_only_beyond_two_standard_deviations(ablation):
    lines = ablation.check_claims(ablation.summarise(_runs(ZSL, LOC)))
    verdicts = {line.split(":")[0][2:]: line.split("**")[1] if "**" in line else "not measured"
                for line in lines}
    assert verdicts == {
        "learned parts localise the annotated parts better than random boxes": "holds",
        "global + local beats global only (ZSL top-1)": "holds",  # +10 > 2 x 1
        "compactness + diversity improve localisation": "not shown",  # -10 within 2 x 5
        "compactness + diversity improve accuracy (ZSL top-1)": "not shown",
        "the class-center triplet loss improves accuracy (ZSL top-1)": "holds",
        # The made-up runs have no localisation at init.
        "joint training moves the boxes onto the parts (full": "not measured",
    }
    table = ablation.summarise(_runs({**ZSL, "no_cct": [0.80, 0.81, 0.82]}, LOC))
    assert "**reversed**" in ablation.check_claims(table)[-2]
    partial = ablation.summarise(_runs({"full": ZSL["full"]}, {"full": LOC["full"]}))
    assert all("not measured" in line for line in ablation.check_claims(partial))


def test_joint_training_claim_compares_the_full_model_with_its_own_init(ablation):
    runs = _runs(ZSL, LOC)
    for run, init in zip(runs["full"], [0.30, 0.31, 0.32]):
        run["localisation_at_init"] = init  # final 0.50 each seed
    line = ablation.check_claims(ablation.summarise(runs))[-1]
    assert "**holds**" in line and "full localisation_at_init 31.0" in line
    text = ablation.markdown(ablation.summarise(runs), "cmd", "machine")
    assert "31.0 ± 1.0 → 50.0 ± 0.0" in text


def test_report_only_writes_the_table_plot_and_claims(ablation, tmp_path):
    (tmp_path / "runs.json").write_text(json.dumps(_runs(ZSL, LOC)))
    ablation.main(["--config", "configs/ablation.json", "--output", str(tmp_path), "--report-only"])
    text = (tmp_path / "ablation.md").read_text()
    assert "| full | 61.0 ± 1.0 |" in text
    assert "--report-only" not in text  # the command shown is the one that trains
    assert "backend tensorflow; 15 runs, 150 s" in text
    assert text.count("**holds**") == 3
    assert json.loads((tmp_path / "ablation.json").read_text())["full"]["seeds"] == 3
    assert (tmp_path / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_resuming_with_other_settings_is_refused(ablation, tmp_path):
    (tmp_path / "runs.json").write_text(json.dumps(_runs(ZSL, LOC, overrides=["loss.cpt_weight=0.1"])))
    with pytest.raises(SystemExit, match="runs.json: .*loss.cpt_weight=0.1.*another --output"):
        ablation.main(["--config", "configs/ablation.json", "--output", str(tmp_path), "--report-only"])


@pytest.mark.parametrize("text", ["{trunc", "[1, 2]"])
def test_a_broken_record_is_named_and_kept(ablation, tmp_path, text):
    (tmp_path / "runs.json").write_text(text)
    with pytest.raises(SystemExit, match="runs.json: "):
        ablation.main(["--output", str(tmp_path), "--report-only"])
    assert (tmp_path / "runs.json").read_text() == text  # nothing overwritten


# --------------------------------------------------------------------------
# benchmarks/option_study.py: options chosen on validation only
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def option_study():
    return load_benchmark("option_study")


def _option_runs(val_zsl, val_loc, test_zsl=(0.5, 0.5, 0.5)):
    return [dict(seed=i, val_zsl_top1=val_zsl[i], val_localisation=val_loc[i],
                 val_localisation_at_init=0.4, zsl_top1=test_zsl[i], gzsl_h=0.2,
                 localisation_at_init=0.4, localisation=0.5, seconds=1.0)
            for i in range(3)]


def test_an_option_is_adopted_when_its_paired_gain_beats_its_standard_error(option_study):
    runs = {
        "default": _option_runs([0.50, 0.50, 0.50], [0.40, 0.40, 0.40]),
        # Better in the mean only through one seed: gain 0.047 ± 0.052.
        "anchor_cnet": _option_runs([0.49, 0.49, 0.80], [0.40, 0.40, 0.40]),
        # A steady gain: scores +0.035, +0.025, +0.015 (0.025 ± 0.006).
        "alternate": _option_runs([0.52, 0.53, 0.51], [0.45, 0.42, 0.42]),
        # Worse on validation, far better on test: the test never chooses.
        "no_peak_gradient": _option_runs([0.45, 0.45, 0.45], [0.40, 0.40, 0.40],
                                         test_zsl=(0.9, 0.9, 0.9)),
    }
    table = option_study.summarise(runs)
    verdicts = option_study.choose(runs)
    assert not verdicts["anchor_cnet"]["adopt"]
    assert verdicts["anchor_cnet"]["mean"] == pytest.approx(0.14 / 3)
    assert verdicts["alternate"]["adopt"] and verdicts["alternate"]["wins"] == 3
    assert verdicts["alternate"]["standard_error"] == pytest.approx(0.01 / 3 ** 0.5)
    assert not verdicts["no_peak_gradient"]["adopt"]
    assert table["default"]["score"] == pytest.approx((0.45, 0.0))


def test_option_report_shows_init_to_final_localisation(option_study, tmp_path):
    runs = {"default": _option_runs([0.5] * 3, [0.4] * 3),
            "alternate": _option_runs([0.6] * 3, [0.5] * 3)}
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    option_study.main(["--output", str(tmp_path), "--options", "default", "alternate",
                       "--report-only"])
    text = (tmp_path / "study.md").read_text()
    assert "| alternate |" in text and "adopt (+10.0 ± 0.0, 3/3 paired wins)" in text
    assert "40.0 ± 0.0 → 50.0 ± 0.0" in text  # test localisation, init -> final
    verdicts = json.loads((tmp_path / "study.json").read_text())["verdicts"]
    assert verdicts["alternate"]["adopt"] is True


@pytest.mark.slow
def test_a_study_run_records_localisation_at_init_and_validation(ablation, tmp_path):
    from tests.test_training import tiny_overrides

    overrides = [o for o in tiny_overrides(tmp_path, tmp_path / "data",
                                           **{"train.steps_per_epoch": 3})
                 if not o.startswith("output_dir=")]
    result = ablation.run_variant("configs/demo.json", "full", 0, str(tmp_path / "study"),
                                  overrides)
    for key in ("localisation", "localisation_at_init", "val_localisation",
                "val_localisation_at_init"):
        assert 0.0 <= result[key] <= 1.0, (key, result[key])
    best = json.loads((tmp_path / "study" / "runs" / "full_seed0" / "checkpoints"
                       / "best.json").read_text())
    assert result["val_zsl_top1"] == best["value"]
