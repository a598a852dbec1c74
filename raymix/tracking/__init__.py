"""Tracking: MLflow parent/child runs (the layout is in the README, "What lands in MLflow"). A leaf: imports config/ only."""

from raymix.tracking.mlflow_tracker import (
    MetricLogger,
    MlflowTracker,
    output_root,
    resolve_uri,
    ui_hint,
)

__all__ = ["MetricLogger", "MlflowTracker", "output_root", "resolve_uri", "ui_hint"]
