"""How good a classifier's answers are: scores of its rows (`scores`), bootstrap intervals (`bootstrap`),
calibration (`calibration`), and a run's plots and test report (`plots`)."""

from ensayo.metrics.bootstrap import BOOTSTRAP_CELLS, bootstrap_intervals
from ensayo.metrics.calibration import (
    TEMPERATURE_BOUNDS,
    calibration_error,
    expected_calibration_error,
    fit_temperature,
    reliability_points,
)
from ensayo.metrics.plots import plot_confusion, plot_learning_curves, plot_reliability, write_test_report
from ensayo.metrics.scores import (
    QUALITY,
    ROW,
    classification_metrics,
    confusion_text,
    interval95,
    log_loss,
    most_confused,
    per_class_report,
    rows_log_loss,
    score,
    score_rows,
    summarise,
    temper,
)

__all__ = ["BOOTSTRAP_CELLS", "QUALITY", "ROW", "TEMPERATURE_BOUNDS", "bootstrap_intervals", "calibration_error",
           "classification_metrics", "confusion_text", "expected_calibration_error", "fit_temperature", "interval95",
           "log_loss", "most_confused", "per_class_report", "plot_confusion", "plot_learning_curves",
           "plot_reliability", "reliability_points", "rows_log_loss", "score", "score_rows", "summarise", "temper",
           "write_test_report"]
