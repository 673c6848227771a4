"""Python run where the installed seismic_ml cannot be imported: only a model's own code/ copy.

`BLOCK_SEISMIC_ML` is the start of a script for a fresh interpreter (`python -I`): a blocking
import hook lets `seismic_ml` come only from a folder `code/seismic_ml` beside an `MLmodel` (what
MLflow puts on sys.path when it loads a logged model), and records in `blocked` why a plain
`import seismic_ml` failed. Shared by test_portable_models and test_readme_elsewhere.
"""

BLOCK_SEISMIC_ML = r'''
import importlib.abc, importlib.machinery, json, os, sys

class OnlyTheModelsCode(importlib.abc.MetaPathFinder):
    """seismic_ml may come only from a model's code/ folder (beside its MLmodel)."""

    def find_spec(self, name, path, target=None):
        if name != "seismic_ml" and not name.startswith("seismic_ml."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        origin = os.path.realpath(spec.origin) if spec and spec.origin else ""
        root = origin.rpartition(os.sep + "code" + os.sep + "seismic_ml")[0]
        if not root or not os.path.isfile(os.path.join(root, "MLmodel")):
            raise ImportError(f"blocked: {name} from {origin or 'the installed package'}")
        return spec

sys.meta_path.insert(0, OnlyTheModelsCode())
before = set(sys.modules)
try:
    import seismic_ml
    blocked = ""
except ImportError as exc:
    blocked = str(exc)

'''
