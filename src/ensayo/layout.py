"""Every file name of a run directory and of a study directory, defined once.

A run directory is what `ensayo run` writes and what predicting, serving and exporting read. Its
format version is written into it (`FORMAT`); runs saved before the format had a version (ensayo
0.1.0) read as version 1.
"""

from __future__ import annotations

FORMAT_VERSION = 2

# ----------------------------------------------------------------------------------------- a run
FORMAT = "format.json"  # {"version": FORMAT_VERSION, "model_type": ...}
RECIPE = "recipe.yaml"  # the recipe as run: every key, defaults included
STATE = "features.json"  # fitted preprocessing of the inputs and the output, as JSON
WEIGHTS = "model.safetensors"  # a network's weights
LINEAR_WEIGHTS = "linear.safetensors"  # a linear model's coefficients, intercepts and idf
MEMBERS = "members"  # an ensemble's member runs, one folder each
FOLDS = "folds"  # a cross-validated run's fold runs: folds/fold<k>, one run directory each
CALIBRATION = "calibration.json"  # {"temperature": T}: applied to the probabilities at prediction
OUT_OF_FOLD = "out_of_fold.csv"  # a cross-validated run's predictions of every row by the fold that held it out
# a cross-validated run's top probabilities of every row by the fold that held it out, with the rows' lines and the
# source file's digest: what a student of this run learns from (train.teacher)
OUT_OF_FOLD_PROBABILITIES = "out_of_fold_probabilities.npz"
TEACHER = "teacher.npz"  # a student's copy of its teacher's probabilities for its training rows, made once
TEACHER_RECORD = "teacher.json"  # which teacher a student learnt from (its run, id, weight, temperature)
METRICS = "metrics.json"  # final scores, written after the run's other files: with no TRAINING_ONLY file, finished
HISTORY = "history.json"  # one record per epoch
DATA_REPORT = "data_report.json"  # rows read, bad rows, split sizes
TRACKING = "tracking.json"  # the MLflow run id and store of the run
CHECKPOINT = "checkpoint.pt"  # while training: the last consistent state, removed when the run ends
BEST_WEIGHTS = "best.safetensors"  # while training: the best epoch's weights, removed when the run ends
ONNX_MODEL = "model.onnx"  # `ensayo export --format onnx`: the network, answering probabilities
ONNX_INPUTS = "onnx.json"  # the ONNX model's input tensors, in order, and the opset
MLFLOW_MODEL = "mlflow-model"  # `ensayo export --format mlflow` writes this folder unless told another
EXAMPLES = "examples.json"  # a few test rows (a generator's: prompts) to try the model with
EXAMPLE_FILES = "examples"  # the files those rows read (a clip, a photo)

# what a run writes for a person to look at
LEARNING_CURVES = "learning_curves.png"
CONFUSION = "confusion.png"
CONFUSION_TEXT = "confusion.txt"
PER_CLASS = "per_class.csv"
SAMPLES = "samples.txt"
RELIABILITY = "reliability.png"
REPORT_FILES = (LEARNING_CURVES, CONFUSION, PER_CLASS, SAMPLES, RELIABILITY)

TRAINING_ONLY = (CHECKPOINT, BEST_WEIGHTS)  # not part of a finished run

# ------------------------------------------------------------------------------- any directory
LOCK = ".lock"  # held (flock) by the one process that writes the directory; the system frees it when it dies
LOCK_HOLDER = ".lock.holder"  # who holds it: process, host, command, since when
BOOKKEEPING = (LOCK, LOCK_HOLDER)

# -------------------------------------------------------------------------------------- a study
STUDY = "study.json"  # the study's MLflow parent run
RESULTS = "results.json"  # every trial's status and metrics, and the summary
TRIALS = "trials"  # trials/<configuration>/seed<k>/: one run directory each
TRIAL_ERROR = "error.txt"  # in a trial folder: why it failed or was pruned
EMBEDDINGS = "embeddings"  # word vectors trained for the study: embeddings/<name>.vec
OPTUNA_DB = "optuna.db"
REPORT_HTML = "report.html"
REPORT_MARKDOWN = "report.md"
