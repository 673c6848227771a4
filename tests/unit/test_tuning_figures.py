"""The tuning report draws Optuna's own figures (history, intermediate values, importances)."""

from pathlib import Path

import optuna
import pytest

from seismic_ml.tuning.report import OPTUNA_FIGURES, plot_analysis, plot_optuna_figures

PNG = b"\x89PNG"


def study_with(n_complete: int) -> optuna.Study:
    """An in-memory study: n complete trials reporting two epochs, and one pruned."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(n_complete):
        trial = study.ask()
        lr, width = (
            trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            trial.suggest_int("w", 1, 4),
        )
        for epoch in (1, 2):
            trial.report(lr * 100 + width / epoch, epoch)
        study.tell(trial, lr * 100 + width / 2)
    pruned = study.ask()
    pruned.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    pruned.report(9.0, 1)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    return study


def test_every_optuna_figure_is_drawn_once_trials_allow(tmp_path: Path) -> None:
    written = plot_optuna_figures(study_with(3), tmp_path)
    assert sorted(p.name for p in written) == sorted(OPTUNA_FIGURES)
    assert all(p.read_bytes().startswith(PNG) for p in written)


@pytest.mark.parametrize("n_complete", [0, 1])
def test_importances_wait_for_two_complete_trials_and_nothing_fails(tmp_path, n_complete) -> None:
    written = {p.name for p in plot_optuna_figures(study_with(n_complete), tmp_path)}
    assert "param_importances.png" not in written
    assert "optimization_history.png" in written
    assert (
        plot_analysis(study_with(n_complete), None, tmp_path / "a.png").read_bytes().startswith(PNG)
    )
