"""Name the classes of images with a trained SGMA model: `python predict.py --model
runs/demo/checkpoints/best.keras photos/ [--classes new_classes.csv] [--mode
zsl|gzsl|gzsl-calibrated] [--top-k 5] [--output predictions.csv] [--figures DIR]`.

Writes a CSV (file, top-k class names and scores, part boxes). `--model` is a
`.keras` file (any KERAS_BACKEND, loaded in Keras's safe mode) or an exported
SavedModel folder (TensorFlow). A SavedModel's graph is code that predicting runs:
a folder whose graph holds ops export.py never writes is refused before it is
loaded, unless `--trust-savedmodel`. `--skip-bad-images` drops unreadable image
files instead of stopping. See `sgma_keras/workflow/predictor.py`.
"""

import sys

from sgma_keras.workflow.cli import predict_main

if __name__ == "__main__":
    sys.exit(predict_main())
