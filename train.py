"""Train SGMA: `python train.py --config configs/awa.json [--set key=value ...]`.

The backend comes from KERAS_BACKEND (tensorflow, jax or torch). Running the
same command again resumes an interrupted run. See README.md, "Training".
"""

import argparse
import sys

from sgma_keras.config import ConfigError, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON config file (see configs/).")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="Override a config value, e.g. --set train.joint.epochs=10 (repeatable).",
    )
    parser.add_argument("--jit", action="store_true",
                        help="XLA on TensorFlow and JAX, torch.compile on PyTorch.")
    parser.add_argument("--mixed-precision", choices=["mixed_float16", "mixed_bfloat16"],
                        help="Mixed-precision policy.")
    parser.add_argument("--output-dir", help="Run folder (default: the config's output_dir).")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    overrides = list(args.set)
    if args.jit:
        overrides.append("train.jit=true")
    if args.mixed_precision:
        overrides.append(f"train.mixed_precision={args.mixed_precision}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2

    # Heavy imports only after the config is known to be good.
    from sgma_keras import training
    from sgma_keras.data.zsl_data import DataError
    from sgma_keras.evaluation import format_results

    training.main_logging()
    try:
        results = training.train(cfg)
    except (DataError, training.TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_results(results))
    print(f"Run folder: {cfg['output_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
