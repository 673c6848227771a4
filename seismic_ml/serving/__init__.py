"""Raw ZNE windows in, picks or magnitudes out: the pyfunc model behind `mlflow models serve`."""
