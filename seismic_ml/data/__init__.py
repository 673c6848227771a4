"""Datasets: the registry of names and paths, the synthetic set, the task pipelines, checks.

SPLITS sits here, free of seisbench and pandas, so that the CLI can offer it as --split choices
without importing the data stack.
"""

SPLITS = ("train", "dev", "test")
