"""Evaluate a trained SGMA model: `python evaluate.py --config configs/awa.json
[--checkpoint runs/awa/checkpoints/best.keras] [--output runs/awa/eval] [--set key=value ...]`.

Writes results.json (ZSL top-1, GZSL u/s/H, calibrated GZSL with the constant
chosen on the validation split, AUSUC, part localisation), per-class
accuracies (CSV) and figures (seen-unseen curve, attention maps, part crops)
into the results folder. The backend comes from KERAS_BACKEND. See
`sgma_keras/workflow/evaluation.py`.
"""

import sys

from sgma_keras.workflow.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
