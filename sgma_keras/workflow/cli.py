"""The command lines of `train.py`, `evaluate.py`, `export.py`, `predict.py`,
`samples.py` and `python -m sgma_keras.config`: one way to parse arguments, load the
config and report errors.

Every command takes `--config FILE` and repeatable `--set KEY=VALUE` overrides, and
exits with 0 on success, 2 on a bad config or arguments (every problem listed), 1 on
any other input problem (`sgma_keras.errors.UserError`: the message names the file or
key) or a diverged training run or an OSError (one line: the path and the cause), 130
on Ctrl-C and 143 on SIGTERM (an interrupted run resumes when run again). They are also
the console commands `sgma-train`, `sgma-evaluate`, `sgma-export`, `sgma-predict` and
`sgma-samples` of the installed package (pyproject.toml); their messages name the
command as the user typed it (`command_name`).

A model file given to evaluate, export or predict is checked (`workflow.files`) before
any framework loads; on a terminal, the printed lines are wrapped to its width
(`workflow.terminal`).

This module imports no framework: `--help` and a bad config answer without loading
Keras, TensorFlow, JAX or PyTorch (`tests/test_cli_light.py` checks it). The heavy
modules are imported inside each `main`, once the config is known to be good, after
`_quiet_start` has silenced the frameworks' start-up lines (`--verbose` keeps them).

`--config` takes a file (relative to the current folder) or the name of a built-in
config (`demo`, `configs/demo.json`; `sgma_keras.config.find_config`).
"""

import argparse
import contextlib
import errno
import functools
import io
import logging
import math
import os
import re
import shlex
import signal
import sys

from sgma_keras.config import ConfigError, builtin_config_names, find_config, load_config
from sgma_keras.config_output import config_to_json, reference_markdown
from sgma_keras.errors import UserError
from sgma_keras.workflow.files import default_checkpoint_path, read_checkpoint_config
from sgma_keras.workflow.interrupts import handling_stop_signals
from sgma_keras.workflow.terminal import TerminalFormatter, wrap_text

log = logging.getLogger("sgma_keras")


def _started_as_console_command():
    started = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return started if started.startswith("sgma-") else None


def command_name(script):
    """How the user runs `script` (e.g. "predict.py"): `sgma-predict` when this process
    was started as a console command, else `python predict.py` (messages name it)."""
    if _started_as_console_command():
        return "sgma-" + os.path.splitext(script)[0]
    return f"python {script}"


def _parser(prog, description, config_required=True):
    started = _started_as_console_command()
    if started:  # started as a console command (sgma-train, ...)
        prog = started
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=config_required,
                        help="JSON config file (relative to the current folder), or a "
                             f"built-in config: {', '.join(builtin_config_names())} (see "
                             "configs/ and docs/CONFIG.md).")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.joint.epochs=10 "
                             "(repeatable; the value is JSON, else a string).")
    parser.add_argument("--verbose", action="store_true",
                        help="keep the frameworks' start-up and info lines (TensorFlow, "
                             "absl, XLA), silenced by default.")
    return parser


def _load_config(path, overrides, **kwargs):
    """The resolved config, or None after printing every problem."""
    if path is not None:
        found = find_config(path)
        named = os.fspath(path)
        if found != named and (os.sep in named or named.endswith(".json")):  # not "demo"
            _error_line(f"{path}: not in {os.getcwd()}; using the built-in {found}")
        path = found
    try:
        return load_config(path, overrides, **kwargs)
    except ConfigError as error:
        _error_line(error)
        return None


@contextlib.contextmanager
def _quiet_start(verbose):
    """Imports inside it happen without the frameworks' start-up lines.

    TF_CPP_MIN_LOG_LEVEL=2 (unless the user set it) drops TensorFlow's C++ info and
    warning lines from then on ("XLA service ...", "Compiled cluster ..."), errors stay.
    The lines TensorFlow's libraries print while they load come before TensorFlow reads
    that variable (absl's "before InitializeLog", oneDNN, cpu_feature_guard), so the
    process's stderr (file descriptor 2) points at /dev/null during the imports; Python
    errors are raised after it is restored. `--verbose` changes nothing.
    """
    if verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable file descriptor 2 (embedded interpreters)
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _NotRetracing(logging.Filter):
    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def _setup_logging(verbose=False):
    """Our INFO lines (timestamped, to stdout); other libraries' only with --verbose."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(TerminalFormatter(sys.stdout))  # on a terminal: wrapped to its width
    if verbose:
        if not root.handlers:
            logging.basicConfig(level=logging.INFO, handlers=[handler])
        return
    ours = logging.getLogger("sgma_keras")
    ours.setLevel(logging.INFO)
    if not root.handlers and not ours.handlers:
        ours.addHandler(handler)
    # TensorFlow's notice that a function was traced again (evaluation scores splits
    # of other sizes): a speed note for developers, 8 lines each time.
    logging.getLogger("tensorflow").addFilter(_NotRetracing())


def _error_line(text):
    """`text` to stderr (wrapped to the terminal's width when stderr is one)."""
    print(wrap_text(str(text), sys.stderr), file=sys.stderr)


def _not_finite(value, option):
    """The error line of a float option that is NaN or infinite (argparse's float
    takes "nan" and "inf"), else None."""
    if value is None or math.isfinite(value):
        return None
    return f"error: {option} must be a finite number; got {value}"


def _fail(error):
    _error_line(f"error: {error}")
    return 1


def _train_command(args):
    """The training command of the config a command was given (for its hints)."""
    words = [command_name("train.py"), "--config", args.config]
    for item in args.set:
        words += ["--set", item]
    return " ".join(shlex.quote(w) if w != words[0] else w for w in words)


def _check_checkpoint_early(args, cfg):
    """The model file of --checkpoint (or the run's default), checked before any
    framework loads; returns it. Raises CheckpointError (one line: the path; how to
    get a model when none was given)."""
    if args.checkpoint is not None:
        read_checkpoint_config(args.checkpoint)
        return args.checkpoint
    checkpoint = default_checkpoint_path(cfg["output_dir"])
    read_checkpoint_config(checkpoint, hint=f"Train a model first ({_train_command(args)}), "
                                            "or give the model file with --checkpoint.")
    return checkpoint


# The run folder of the command in progress, named when it is interrupted.
_STATE = {"run_folder": None}


def _path_in_traceback(tb):
    """The file a failed write was writing, from the frames it failed in (innermost
    first): an open file object, or the `filename`/`filepath` of the object writing
    (Keras's CSVLogger). None when no frame holds one."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name, value in frame.f_locals.items():
            name_of = getattr(value, "name", None) if isinstance(value, io.IOBase) else None
            if isinstance(name_of, str) and not name_of.startswith("<"):  # not <stdout>
                return name_of
            if name == "self":
                for attribute in ("filename", "filepath"):
                    found = getattr(value, attribute, None)
                    if isinstance(found, (str, os.PathLike)):
                        return os.fspath(found)
    return None


def _os_error_line(error):
    """An OSError as one line: the path and the cause."""
    path = error.filename
    if path is None:
        path = _path_in_traceback(error.__traceback__)
    cause = error.strerror or str(error)
    if error.errno and "\n" in str(cause):  # h5py's: several lines of HDF5 details
        cause = os.strerror(error.errno)
    text = f"{path!r}: {cause}" if path is not None else cause
    return " ".join(str(text).split())


# Write failures that frameworks raise as their own exceptions, with the path and the
# system's reason in the text: TensorFlow's file system ("<path>; No space left on
# device", e.g. TensorBoard's event writer) and HDF5 ("filename = '<path>', ...,
# errno = 28").
_WRITE_ERRNOS = tuple(getattr(errno, name) for name in ("ENOSPC", "EIO", "EROFS", "EFBIG",
                                                         "EDQUOT", "EACCES")
                      if hasattr(errno, name))
_TF_PATH = re.compile(r"(?:^|\s)(/[^;\n]+); ([^\n]+)")
_HDF5_PATH = re.compile(r"filename = '([^']+)'.*?errno = (\d+)", re.S)


def _write_failure_line(error):
    """One line (path: cause) for a framework's write failure, else None."""
    text = str(error)
    found = _HDF5_PATH.search(text)
    if found and int(found.group(2)) in _WRITE_ERRNOS:
        return f"{found.group(1)!r}: {os.strerror(int(found.group(2)))}"
    reasons = {os.strerror(code): code for code in _WRITE_ERRNOS}
    for match in _TF_PATH.finditer(text):
        reason = match.group(2).strip()
        if reason in reasons:
            return f"{match.group(1)!r}: {reason}"
    return None


def _guarded(main):
    """Ends `main` on SIGINT/SIGTERM (130/143) or a failed read or write (1: an
    OSError, or a framework's write failure such as TensorBoard's on a full disk) with
    one line each, naming the file.

    An interrupted training run keeps its state (every file is written atomically,
    the last backup included) and resumes when the same command runs again.
    """

    @functools.wraps(main)
    def run(argv=None):
        try:
            with handling_stop_signals():
                return main(argv)
        except KeyboardInterrupt as interrupt:
            folder = _STATE["run_folder"]
            hint = (f"; state kept in {folder}; run the same command to resume"
                    if folder else "")
            _error_line(f"interrupted{hint}")
            return 128 + int(getattr(interrupt, "signum", signal.SIGINT))
        except OSError as error:
            _error_line(f"error: {_os_error_line(error)}")
            return 1
        except Exception as error:  # noqa: BLE001 - a framework's write failure, else re-raised
            line = _write_failure_line(error)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            return 1

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
    group = parser.add_argument_group(
        "several processes (JAX and TensorFlow; see docs/multi_host.md)")
    group.add_argument("--num-processes", type=int, metavar="N",
                       help="processes of the launch, one per host (or GPU group); implies "
                            "train.distribute=data_parallel.")
    group.add_argument("--process-id", type=int, metavar="I",
                       help="this process's id, 0 to N-1; process 0 writes the run folder.")
    group.add_argument("--coordinator", metavar="HOST:PORT[,HOST:PORT...]",
                       help="JAX: the address of process 0; TensorFlow: the address of "
                            "every process, in process-id order (its TF_CONFIG).")
    group.add_argument("--local-processes", type=int, metavar="N",
                       help="start N processes on this machine (127.0.0.1) and wait for "
                            "them: a multi-process launch in one command.")
    return parser


def _without_local_processes(argv):
    """The train arguments less --local-processes N (the launcher's own)."""
    rest, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--local-processes":
            skip = True
        elif not item.startswith("--local-processes="):
            rest.append(item)
    return rest


@_guarded
def train_main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = train_parser().parse_args(argv)
    overrides = list(args.set)
    several = (args.num_processes or 1) > 1 or (args.local_processes or 1) > 1
    if args.local_processes is not None and (
            args.local_processes < 1 or args.num_processes is not None
            or args.process_id is not None or args.coordinator is not None):
        _error_line("error: --local-processes N (N >= 1) starts the processes itself; it "
                    "takes no --num-processes, --process-id or --coordinator")
        return 2
    if several:
        overrides.append("train.distribute=data_parallel")
    if args.jit:
        overrides.append("train.jit=true")
    if args.mixed_precision:
        overrides.append(f"train.mixed_precision={args.mixed_precision}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    cfg = _load_config(args.config, overrides)
    if cfg is None:
        return 2
    if args.local_processes is not None and args.local_processes > 1:
        if os.environ.get("KERAS_BACKEND") == "torch":
            from sgma_keras.multi_process import TORCH_MESSAGE

            return _fail(TORCH_MESSAGE.format(count=args.local_processes,
                                              source="--local-processes"))
        from sgma_keras.workflow.launch import launch_local, local_commands

        return launch_local(local_commands(_without_local_processes(argv),
                                           args.local_processes))

    with _quiet_start(args.verbose):
        from sgma_keras import multi_process
        from sgma_keras.workflow.evaluation import format_results
        from sgma_keras.workflow.training import TrainingDiverged, train

    _setup_logging(args.verbose)
    _STATE["run_folder"] = cfg["output_dir"]
    try:
        launch = multi_process.initialize(args.coordinator, args.num_processes,
                                          args.process_id)
    except UserError as error:
        return _fail(error)
    chief = launch.index == 0
    if not chief:  # the chief reports; the others say only what goes wrong
        logging.getLogger("sgma_keras").setLevel(logging.WARNING)
    try:
        results = train(cfg, verbose="auto" if chief else 0,
                        allow_config_change=args.allow_config_change)
    except (UserError, TrainingDiverged) as error:
        return _fail(error)
    except Exception as error:  # noqa: BLE001 - an engine error of a lost process
        line = multi_process.lost_peer_message(error)
        if line is None:
            raise
        _error_line(f"error: {line}")
        sys.stderr.flush()
        sys.stdout.flush()
        # The engine's exit handshake would wait for the lost process (JAX's shutdown
        # barrier, until its heartbeat timeout): leave at once. Every file was written
        # atomically and the kernel drops the run folder's lock.
        os._exit(1)
    if not chief:
        print(f"process {launch.index} of {launch.count}: done")
        return 0
    print(wrap_text(format_results(results), sys.stdout))
    print(wrap_text(f"Run folder: {cfg['output_dir']}", sys.stdout))
    return 0


# --------------------------------------------------------------------------
# evaluate.py
# --------------------------------------------------------------------------


def evaluate_parser():
    parser = _parser("evaluate.py", "Evaluate a trained SGMA checkpoint: ZSL, GZSL (u, s, H), "
                                    "calibrated GZSL, AUSUC, per-class accuracies, attention "
                                    "and part figures.")
    parser.add_argument("--checkpoint", help="SGMA .keras file (default: "
                        "<output_dir>/checkpoints/final.keras).")
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
    bad = _not_finite(args.calibration, "--calibration")
    if bad:
        print(bad, file=sys.stderr)
        return 2
    cfg = _load_config(args.config, args.set)
    if cfg is None:
        return 2
    try:
        checkpoint = _check_checkpoint_early(args, cfg)
    except UserError as error:
        return _fail(error)

    with _quiet_start(args.verbose):
        from sgma_keras.workflow.evaluation import RESULTS_FILE, format_results, run_evaluation

    _setup_logging(args.verbose)
    try:
        results = run_evaluation(cfg, checkpoint, args.output, args.calibration,
                                 args.keras_metrics)
    except UserError as error:
        return _fail(error)
    print(wrap_text(format_results(results), sys.stdout))
    out = args.output or os.path.join(cfg["output_dir"], "eval")
    print(wrap_text(f"Results: {os.path.join(out, RESULTS_FILE)}", sys.stdout))
    return 0


# --------------------------------------------------------------------------
# export.py
# --------------------------------------------------------------------------


def export_parser():
    parser = _parser("export.py", "Export a trained SGMA checkpoint as a TensorFlow SavedModel "
                                  "taking uint8 images and returning class scores, the "
                                  "predicted class and the part boxes.", config_required=False)
    parser.add_argument("--checkpoint", help="SGMA .keras file (default: "
                        "<output_dir>/checkpoints/final.keras).")
    parser.add_argument("--output", help="SavedModel folder to write (default: "
                        "<output_dir>/saved_model).")
    parser.add_argument("--semantics", help="new class semantic matrix (.npy, or a text "
                        "file with one row per class) to score instead of the trained one; "
                        "raw values (the dataset's attribute scale): they get the transform "
                        "the training classes got (L2 normalisation by default).")
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
    try:
        checkpoint = _check_checkpoint_early(args, cfg)
    except UserError as error:
        return _fail(error)

    with _quiet_start(args.verbose):
        from sgma_keras.workflow import export
        from sgma_keras.workflow.build import load_data
        from sgma_keras.workflow.checkpoints import (
            check_checkpoint_matches,
            describe_checkpoint,
        )

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
    print(f"SavedModel written to {path} (signature {export.SIGNATURE!r}: uint8 images "
          "[None, H, W, 3] -> scores, calibrated_scores, predicted_class (calibrated GZSL), "
          "predicted_name, boxes).")
    return 0


# --------------------------------------------------------------------------
# predict.py
# --------------------------------------------------------------------------


def predict_parser():
    started = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    parser = argparse.ArgumentParser(
        prog=started if started.startswith("sgma-") else "predict.py",
        description="Name the classes of images with a trained SGMA model (.keras file on "
                    "any backend, or an exported SavedModel folder with TensorFlow): a CSV "
                    "of the top-k classes, their scores and the part boxes per image.")
    parser.add_argument("images", nargs="+", help="image files or folders (searched "
                        "recursively for .jpg/.jpeg/.png/.gif/.bmp).")
    parser.add_argument("--model", required=True, help="SGMA .keras file (e.g. "
                        "<output_dir>/checkpoints/final.keras; loaded in Keras's safe mode) "
                        "or SavedModel folder from export.py. A SavedModel's graph is code "
                        "that predicting runs: a folder whose graph holds ops export.py "
                        "never writes (e.g. file reads or writes) is refused before it is "
                        "loaded; see --trust-savedmodel.")
    parser.add_argument("--trust-savedmodel", action="store_true", help="run a SavedModel "
                        "--model even when its graph holds ops export.py never writes: it "
                        "then runs whatever code the folder's author put in it. Only for "
                        "folders from someone you trust.")
    parser.add_argument("--output", default="predictions.csv", help="CSV to write "
                        "(default: predictions.csv).")
    parser.add_argument("--classes", help="CSV or JSON of new classes: a name and the "
                        "attribute vector (the dataset's attribute order, raw values: they get "
                        "the transform the training classes got) per class; they are "
                        "scored too (zero-shot).")
    parser.add_argument("--replace-classes", action="store_true", help="score only the "
                        "classes of --classes (rows equal to a training class's vector are "
                        "that class).")
    parser.add_argument("--mode", choices=["zsl", "gzsl", "gzsl-calibrated"],
                        help="zsl: among the classes not trained on; gzsl: among all; "
                             "gzsl-calibrated (default when the model has a calibration "
                             "constant): all, with the constant chosen on validation.")
    parser.add_argument("--calibration", type=float, help="calibration constant to use "
                        "instead of the model's.")
    parser.add_argument("--top-k", type=int, default=5, help="classes per image (default 5).")
    parser.add_argument("--figures", help="folder for one figure per image: attention maps "
                        "and part boxes, titled with the prediction.")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="images the model scores at once (default 16; lower it when "
                             "memory runs short).")
    parser.add_argument("--skip-bad-images", action="store_true", help="drop image files "
                        "that are missing or cannot be decoded (every file is decoded "
                        "first), with a warning naming them, instead of stopping.")
    parser.add_argument("--verbose", action="store_true",
                        help="keep the frameworks' start-up and info lines, silenced by "
                             "default.")
    return parser


@_guarded
def predict_main(argv=None):
    args = predict_parser().parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        print(ConfigError("--top-k and --batch-size must be >= 1"), file=sys.stderr)
        return 2
    bad = _not_finite(args.calibration, "--calibration")
    if bad:
        print(bad, file=sys.stderr)
        return 2
    if not os.path.isdir(args.model):  # a .keras file: checked before any framework loads
        try:
            read_checkpoint_config(args.model)
        except UserError as error:
            return _fail(error)

    with _quiet_start(args.verbose):
        from sgma_keras.workflow.predictor import run_predict

    _setup_logging(args.verbose)
    try:
        result = run_predict(args.model, args.images, args.output, args.classes,
                             args.replace_classes, args.mode, args.top_k, args.figures,
                             args.batch_size, args.calibration,
                             trust_savedmodel=args.trust_savedmodel,
                             skip_bad_images=args.skip_bad_images)
    except UserError as error:
        return _fail(error)
    for i in range(min(len(result), 20)):
        top = ", ".join(f"{n} ({s:.3g})" for n, s in zip(result.names[i][:3],
                                                         result.top_scores[i][:3]))
        print(f"{result.files[i]}: {top}")
    if len(result) > 20:
        print(f"... {len(result) - 20} more")
    print(f"Predictions ({result.mode}) of {len(result)} images: {args.output}")
    return 0


# --------------------------------------------------------------------------
# samples.py
# --------------------------------------------------------------------------


def samples_parser():
    parser = _parser("samples.py", "Copy a few test images of each unseen class of the "
                                   "config's dataset, and write their class descriptions "
                                   "as a CSV for predict.py --classes: a first prediction "
                                   "in one command.")
    parser.add_argument("--output", default="samples", help="folder to write: images/ "
                        "(one folder per class) and classes.csv (default: samples).")
    parser.add_argument("--per-class", type=int, default=2,
                        help="images per class (default 2).")
    parser.add_argument("--split", choices=["test_unseen", "test_seen"],
                        default="test_unseen", help="the classes and images to sample: "
                        "test_unseen (default: classes no model of the config trains on) "
                        "or test_seen.")
    return parser


@_guarded
def samples_main(argv=None):
    args = samples_parser().parse_args(argv)
    if args.per_class < 1:
        print(ConfigError("--per-class must be >= 1"), file=sys.stderr)
        return 2
    cfg = _load_config(args.config, args.set)
    if cfg is None:
        return 2

    with _quiet_start(args.verbose):
        from sgma_keras.workflow.samples import write_samples

    _setup_logging(args.verbose)
    try:
        samples = write_samples(cfg, args.output, args.per_class, args.split)
    except UserError as error:
        return _fail(error)
    out = os.path.relpath(samples.images)
    csv_file = os.path.relpath(samples.classes_file)
    model = os.path.relpath(os.path.join(cfg["output_dir"], "checkpoints", "final.keras"))
    lines = [
        f"Dataset {samples.dataset}: {samples.data_folder}",
        f"Wrote {len(samples.files)} images of the {len(samples.class_names)} classes of "
        f"its {samples.split} split to {out}/ (one folder per class) and their "
        f"descriptions to {csv_file}.",
        "Name them with the trained model, among the described classes:",
    ]
    print(wrap_text("\n".join(lines), sys.stdout))
    print(f"  {command_name('predict.py')} --model {model} {out} --classes {csv_file} "
          "--replace-classes")
    return 0


# --------------------------------------------------------------------------
# python -m sgma_keras.config
# --------------------------------------------------------------------------


def config_main(argv=None):
    """Validate a config and print it resolved (or the schema as Markdown)."""
    parser = _parser("python -m sgma_keras.config", "Validate a config and print it resolved.",
                     config_required=False)
    parser.add_argument("config_file", nargs="?", metavar="CONFIG",
                        help="the config file, as --config (one of the two)")
    parser.add_argument("--no-check-paths", action="store_true",
                        help="do not check that data paths exist")
    parser.add_argument("--markdown", action="store_true",
                        help="print docs/CONFIG.md (the schema as a Markdown table) and exit")
    args = parser.parse_args(argv)
    if args.config_file is not None:
        if args.config is not None:
            parser.error("name the config once: CONFIG or --config")
        args.config = args.config_file
    if args.markdown:
        sys.stdout.write(reference_markdown())
        return 0
    cfg = _load_config(args.config, args.set, check_paths=not args.no_check_paths)
    if cfg is None:
        return 2
    sys.stdout.write(config_to_json(cfg))
    return 0


# The console commands of pyproject.toml's [project.scripts] point at these mains; a new
# command (e.g. predict) is one main here, one row here and one line there.
COMMANDS = {"train": train_main, "evaluate": evaluate_main, "export": export_main,
            "config": config_main, "predict": predict_main, "samples": samples_main}


if __name__ == "__main__":
    # python -m sgma_keras.workflow.cli {train,evaluate,export,config,predict,samples} [args]
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m sgma_keras.workflow.cli {{{','.join(COMMANDS)}}} [--help]")
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
