"""The command lines of `train.py`, `evaluate.py`, `export.py` and
`python -m sgma_keras.config`: one way to parse arguments, load the config and report
errors.

Every command takes `--config FILE` and repeatable `--set KEY=VALUE` overrides, and
exits with 0 on success, 2 on a bad config or arguments (every problem listed), 1 on
any other input problem (`sgma_keras.errors.UserError`: the message names the file or
key) or a diverged training run or an OSError (one line: the path and the cause), 130
on Ctrl-C and 143 on SIGTERM (an interrupted run resumes when run again). Heavy modules (Keras, TensorFlow) are imported only
once the config is known to be good.
"""

import argparse
import functools
import logging
import os
import signal
import sys

from sgma_keras.config import ConfigError, config_to_json, load_config, reference_markdown
from sgma_keras.errors import UserError

log = logging.getLogger("sgma_keras")


def _parser(prog, description, config_required=True):
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=config_required,
                        help="JSON config file (see configs/ and docs/CONFIG.md).")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.joint.epochs=10 "
                             "(repeatable; the value is JSON, else a string).")
    return parser


def _load_config(path, overrides, **kwargs):
    """The resolved config, or None after printing every problem."""
    try:
        return load_config(path, overrides, **kwargs)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return None


def _setup_logging():
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                            format="%(asctime)s %(message)s")


def _fail(error):
    print(f"error: {error}", file=sys.stderr)
    return 1


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every `finally` and atomic write cleans up."""

    signum = signal.SIGTERM


def _raise_interrupted(signum, frame):
    raise Interrupted()


# The run folder of the command in progress, named when it is interrupted.
_STATE = {"run_folder": None}


def _os_error_line(error):
    """An OSError as one line: the path and the cause."""
    path = error.filename if error.filename is not None else None
    cause = error.strerror or str(error)
    text = f"{path!r}: {cause}" if path is not None else cause
    return " ".join(str(text).split())


def _guarded(main):
    """Ends `main` on SIGINT/SIGTERM (130/143) or an OSError (1) with one line each.

    An interrupted training run keeps its state (every file is written atomically,
    the last backup included) and resumes when the same command runs again.
    """

    @functools.wraps(main)
    def run(argv=None):
        try:
            previous = signal.signal(signal.SIGTERM, _raise_interrupted)
        except ValueError:  # not the main thread: leave SIGTERM alone
            previous = None
        try:
            return main(argv)
        except KeyboardInterrupt as interrupt:
            folder = _STATE["run_folder"]
            hint = (f"; state kept in {folder}; run the same command to resume"
                    if folder else "")
            print(f"interrupted{hint}", file=sys.stderr)
            return 128 + int(getattr(interrupt, "signum", signal.SIGINT))
        except OSError as error:
            print(f"error: {_os_error_line(error)}", file=sys.stderr)
            return 1
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return run


# --------------------------------------------------------------------------
# train.py
# --------------------------------------------------------------------------


def train_parser():
    parser = _parser("train.py", "Train SGMA: warm-up, attention initialisation, joint "
                                 "training, then the test evaluation of the selected model. "
                                 "Running the same command again resumes an interrupted run.")
    parser.add_argument("--jit", action="store_true",
                        help="XLA on TensorFlow and JAX, torch.compile on PyTorch.")
    parser.add_argument("--mixed-precision", choices=["mixed_float16", "mixed_bfloat16"],
                        help="Mixed-precision policy.")
    parser.add_argument("--output-dir", help="Run folder (default: the config's output_dir).")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="continue a run folder trained with another config (not another "
                             "architecture); the change is recorded in its run.json.")
    return parser


@_guarded
def train_main(argv=None):
    args = train_parser().parse_args(argv)
    overrides = list(args.set)
    if args.jit:
        overrides.append("train.jit=true")
    if args.mixed_precision:
        overrides.append(f"train.mixed_precision={args.mixed_precision}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    cfg = _load_config(args.config, overrides)
    if cfg is None:
        return 2

    from sgma_keras.workflow.evaluation import format_results
    from sgma_keras.workflow.training import TrainingDiverged, train

    _setup_logging()
    _STATE["run_folder"] = cfg["output_dir"]
    try:
        results = train(cfg, allow_config_change=args.allow_config_change)
    except (UserError, TrainingDiverged) as error:
        return _fail(error)
    print(format_results(results))
    print(f"Run folder: {cfg['output_dir']}")
    return 0


# --------------------------------------------------------------------------
# evaluate.py
# --------------------------------------------------------------------------


def evaluate_parser():
    parser = _parser("evaluate.py", "Evaluate a trained SGMA checkpoint: ZSL, GZSL (u, s, H), "
                                    "calibrated GZSL, AUSUC, per-class accuracies, attention "
                                    "and part figures.")
    parser.add_argument("--checkpoint", help="SGMA .keras file (default: "
                        "<output_dir>/checkpoints/best.keras).")
    parser.add_argument("--output", help="results folder (default: <output_dir>/eval).")
    parser.add_argument("--calibration", type=float,
                        help="use this calibration constant instead of choosing it on the "
                             "validation split (e.g. for a model refit on trainval).")
    parser.add_argument("--keras-metrics", action="store_true",
                        help="also compute the test metrics with model.evaluate and the "
                             "compiled Keras metrics (a cross-check).")
    return parser


@_guarded
def evaluate_main(argv=None):
    args = evaluate_parser().parse_args(argv)
    cfg = _load_config(args.config, args.set)
    if cfg is None:
        return 2

    from sgma_keras.workflow.evaluation import RESULTS_FILE, format_results, run_evaluation

    _setup_logging()
    try:
        results = run_evaluation(cfg, args.checkpoint, args.output, args.calibration,
                                 args.keras_metrics)
    except UserError as error:
        return _fail(error)
    print(format_results(results))
    out = args.output or os.path.join(cfg["output_dir"], "eval")
    print(f"Results: {os.path.join(out, RESULTS_FILE)}")
    return 0


# --------------------------------------------------------------------------
# export.py
# --------------------------------------------------------------------------


def export_parser():
    parser = _parser("export.py", "Export a trained SGMA checkpoint as a TensorFlow SavedModel "
                                  "taking uint8 images and returning class scores, the "
                                  "predicted class and the part boxes.", config_required=False)
    parser.add_argument("--checkpoint", help="SGMA .keras file (default: "
                        "<output_dir>/checkpoints/best.keras).")
    parser.add_argument("--output", help="SavedModel folder to write (default: "
                        "<output_dir>/saved_model).")
    parser.add_argument("--semantics", help="new class semantic matrix (.npy, or a text "
                        "file with one row per class) to score instead of the trained one.")
    parser.add_argument("--class-names", help="text file, one class name a line (the rows of "
                        "--semantics, or of the trained class set).")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing export folder.")
    return parser


@_guarded
def export_main(argv=None):
    parser = export_parser()
    args = parser.parse_args(argv)
    if args.config is None and (args.checkpoint is None or args.output is None):
        parser.error("give --config, or both --checkpoint and --output")
    if args.config is None and args.set:
        print(ConfigError("--set needs --config"), file=sys.stderr)
        return 2
    cfg = None
    if args.config is not None:
        cfg = _load_config(args.config, args.set)
        if cfg is None:
            return 2

    from sgma_keras.workflow import export
    from sgma_keras.workflow.build import load_data
    from sgma_keras.workflow.checkpoints import (
        check_checkpoint_matches,
        default_checkpoint,
        describe_checkpoint,
        read_checkpoint_config,
    )

    checkpoint = args.checkpoint or default_checkpoint(cfg)
    output = args.output or os.path.join(cfg["output_dir"], "saved_model")
    try:
        # Cheap checks first: output folder, checkpoint file, the new class set.
        output = export.check_output(output, args.overwrite)
        description = describe_checkpoint(read_checkpoint_config(checkpoint))
        semantics = None if args.semantics is None else export.read_semantics_file(args.semantics)
        names = None if args.class_names is None else export.read_class_names_file(args.class_names)
        export.check_class_set(description["semantics"].shape[1], semantics, names,
                               description["semantics"].shape[0] if semantics is None else None,
                               "--semantics / --class-names")
        check_checkpoint_matches(description, cfg, None, repr(checkpoint))
        data = None if cfg is None or semantics is not None else load_data(cfg)
        path = export.export_checkpoint(checkpoint, output, names, semantics, cfg, data,
                                        args.overwrite)
    except UserError as error:
        return _fail(error)
    size = int(description["image_size"])
    print(f"SavedModel written to {path} (signature {export.SIGNATURE!r}: uint8 images "
          f"[None, {size}, {size}, 3] -> scores, predicted_class, predicted_name, boxes).")
    return 0


# --------------------------------------------------------------------------
# python -m sgma_keras.config
# --------------------------------------------------------------------------


def config_main(argv=None):
    """Validate a config and print it resolved (or the schema as Markdown)."""
    parser = _parser("python -m sgma_keras.workflow.cli config", "Validate a config and print it resolved.",
                     config_required=False)
    parser.add_argument("--no-check-paths", action="store_true",
                        help="do not check that data paths exist")
    parser.add_argument("--markdown", action="store_true",
                        help="print docs/CONFIG.md (the schema as a Markdown table) and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(reference_markdown())
        return 0
    cfg = _load_config(args.config, args.set, check_paths=not args.no_check_paths)
    if cfg is None:
        return 2
    sys.stdout.write(config_to_json(cfg))
    return 0


COMMANDS = {"train": train_main, "evaluate": evaluate_main, "export": export_main,
            "config": config_main}


if __name__ == "__main__":
    # python -m sgma_keras.workflow.cli {train,evaluate,export,config} [args]
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m sgma_keras.workflow.cli {{{','.join(COMMANDS)}}} [--help]")
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
