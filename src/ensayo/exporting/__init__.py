"""Exporters: a saved run as an MLflow pyfunc model (any model type) or as ONNX (a neural classifier)."""

from ensayo.exporting.mlflow import Exported, export_mlflow
from ensayo.exporting.onnx import export_onnx, onnx_problem

FORMATS = ("mlflow", "onnx")

__all__ = ["FORMATS", "Exported", "export_mlflow", "export_onnx", "onnx_problem"]
