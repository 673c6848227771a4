"""Logged as the model's code (MLflow models from code); the package does the work, imported from
the copy the model carries in its `code/` folder (MLflow puts that folder on sys.path first)."""

import mlflow

from seismic_ml.serving.pyfunc import SeismicModel

mlflow.models.set_model(SeismicModel())
