"""Export a trained SGMA model as a TensorFlow SavedModel: `python export.py
--config configs/awa.json [--checkpoint ...] [--output DIR] [--semantics new.npy
--class-names new.txt]`.

The SavedModel's `serving_default` signature takes uint8 images [None, S, S, 3]
and returns `scores` over all classes, `predicted_class`, `predicted_name` and
the part `boxes`. Works from any KERAS_BACKEND (the export itself runs under
TensorFlow). See `sgma_keras/workflow/export.py`.
"""

import sys

from sgma_keras.workflow.cli import export_main

if __name__ == "__main__":
    sys.exit(export_main())
