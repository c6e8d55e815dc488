"""Name the classes of images with a trained SGMA model: `python predict.py --model
runs/demo/checkpoints/best.keras photos/ [--classes new_classes.csv] [--mode
zsl|gzsl|gzsl-calibrated] [--top-k 5] [--output predictions.csv] [--figures DIR]`.

Writes a CSV (file, top-k class names and scores, part boxes). `--model` is a
`.keras` file (any KERAS_BACKEND) or an exported SavedModel folder (TensorFlow).
See `sgma_keras/workflow/predict.py`.
"""

import sys

from sgma_keras.workflow.cli import predict_main

if __name__ == "__main__":
    sys.exit(predict_main())
