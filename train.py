"""Train SGMA: `python train.py --config configs/awa.json [--set key=value ...]`.

The backend comes from KERAS_BACKEND (tensorflow, jax or torch). Running the
same command again resumes an interrupted run. See README.md, "Training".
"""

import sys

from sgma_keras.workflow.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
