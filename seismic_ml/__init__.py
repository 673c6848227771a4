"""Deep-learning seismic phase picking and magnitude estimation, tracked in MLflow."""

__version__ = "0.1.0"
