"""python -m seismic_ml: the same as the seismic-ml console script."""

from seismic_ml.cli import main

main()
