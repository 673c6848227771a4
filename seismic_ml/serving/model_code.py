"""Logged as the model's code (MLflow models from code); the installed package does the work."""

import mlflow

from seismic_ml.serving.pyfunc import SeismicModel

mlflow.models.set_model(SeismicModel())
