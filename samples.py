"""Sample images and class descriptions for a first prediction: `python samples.py
--config demo [--output samples] [--per-class 2]`.

Copies a few test images of each unseen class of the config's dataset to
`<output>/images/<class>/` and writes `<output>/classes.csv` (a name and the attribute
vector per class, what `predict.py --classes` reads), then prints the predict.py
command that names them. See `sgma_keras/workflow/samples.py`.
"""

import sys

from sgma_keras.workflow.cli import samples_main

if __name__ == "__main__":
    sys.exit(samples_main())
