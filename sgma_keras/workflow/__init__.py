"""The run pipeline: config -> model, data and optimizer -> stages -> checkpoints -> report.

Each module imports only the ones listed before it (`tests/test_imports.py` fails on
any cycle, imports inside functions included):

    terminal     terminal width, log lines wrapped to it (imports no framework)
    files        a checkpoint file read without Keras, folders a failed command
                 created taken back (imports no framework)
    protocol     which images and classes training, validation and test see
    checkpoints  run folder, crash-safe saving callbacks, checkpoint read/check/load
    build        config -> model (the model sections are its pieces' arguments),
                 optimizer, datasets
    split_outputs  a model run over a labelled split, in order (scores, boxes, maps):
                 what evaluation and calibration read
    evaluation   test report: ZSL, GZSL, calibration on validation, AUSUC, figures
    logs         what training prints (a progress line on a terminal, one line per
                 epoch) and attention images in TensorBoard
    training     the stages as a table (warm-up, attention init, joint), `train(cfg)`
    export       TensorFlow SavedModel of a checkpoint
    predictor    a trained model (.keras or SavedModel) on image files, arrays or tf.data:
                 top-k class names, boxes, maps; new classes from their descriptions
    samples      test images and class descriptions of a config's dataset (a first
                 prediction)
    cli          the argument parsers and `main`s of train.py, evaluate.py, export.py,
                 predict.py, samples.py (the console commands sgma-train, sgma-evaluate,
                 sgma-export, sgma-predict, sgma-samples); imports no framework until a
                 config is valid

The model, its layers and losses (`sgma_keras.model`, `layers/`, `losses`) and the data
(`sgma_keras.data`) sit below this package and never import it.
"""
