"""An independent check of the whole picker recipe: the same PhaseNet, from the same initial
weights, trained for the same steps through seisbench's own GenericGenerator recipe and through
the project's batched path, on a mixed-rate set with picks in Pg/P1/Sg/S1 columns.

"Comparable" here: the two differ only in which random windows they draw (and seisbench's
float64 resampling), so after the same steps their validation losses agree within 25% of the
larger, and both commit to S, with the median S peak on the windows that hold an S label at or
above 0.5 and within 0.15 of each other. Before the rate fix the batched path trained on labels at
twice their place on 200 Hz traces and half on 50 Hz ones: its S peaks stayed near 0.25.
"""

from __future__ import annotations

import numpy as np
import pytest

from seismic_ml.data.quality import screen
from seismic_ml.data.registry import get_split, load_dataset
from tests import recipe

pytestmark = pytest.mark.integration
STEPS, BATCH, SIGMA = 160, 16, 30


@pytest.fixture(scope="module")
def splits():
    dataset = load_dataset("synthetic-mixed:400")
    return screen(get_split(dataset, "train"), "train")[0], screen(get_split(dataset, "dev"))[0]


def test_batched_path_trains_like_seisbench_generators_on_mixed_rates(splits) -> None:
    train, dev = splits
    rates = set(train.metadata["trace_sampling_rate_hz"].round())
    assert {50.0, 100.0, 200.0} <= rates
    results = {}
    for name, loader in (
        ("seisbench", recipe.seisbench_batches(train, SIGMA, BATCH, seed=0)),
        ("batched", recipe.batched_batches(train, SIGMA, BATCH, seed=0)),
    ):
        model = recipe.train_recipe(loader, STEPS, seed=0)
        results[name] = recipe.validate(model, dev, SIGMA)
    summary = {
        name: (round(r.val_loss, 4), round(float(np.median(r.s_peaks)), 3), len(r.s_peaks))
        for name, r in results.items()
    }
    print("val loss, median S peak, S windows:", summary)
    losses = [r.val_loss for r in results.values()]
    assert abs(losses[0] - losses[1]) <= 0.25 * max(losses), summary
    s_medians = [float(np.median(r.s_peaks)) for r in results.values()]
    assert min(s_medians) >= 0.5, summary
    assert abs(s_medians[0] - s_medians[1]) <= 0.15, summary
