"""Preflight with the demo foundation on the data the tests and the demo use: nothing blocks."""

import numpy as np
import pytest
from ase.data import chemical_symbols

from core.data.datasets import read_configurations
from core.data.demo_data import generate_target_dataset
from core.data.label_values import labels_of
from core.registry.foundations import load_own_model
from core.science.cache import PredictionCache
from core.science.cost import probe_cost, trainable_copy
from core.science.e0s import model_e0s
from core.science.model_checks import trainable_parameters
from core.science.preflight import run_preflight
from core.science.preflight_findings import review
from core.science.spec import JobSpec


@pytest.fixture(scope="module")
def foundation(demo_foundation):
    return load_own_model(demo_foundation)


def test_demo_target_data_pass_preflight_and_share_energies_with_e0_estimation(
    foundation, tmp_path
) -> None:
    configs = generate_target_dataset(40, seed=1, system="molecules")
    cache = PredictionCache(tmp_path)
    spec = JobSpec(train_dataset="demo")

    outcome = run_preflight(spec, configs, foundation, foundation_sha256="demo", cache=cache)
    calls = []
    cached = cache.energies("demo", configs, lambda: calls.append(1) or [])

    assert outcome.report.blocking == []
    assert outcome.report.suggestion is not None
    assert calls == [] and list(cached) == pytest.approx(list(outcome.predictions.energies))
    assert outcome.cost is not None and outcome.cost.seconds_per_step > 0


def test_acetylacetone_at_pbe_d3_passes_preflight_as_another_zero_of_energy(
    foundation, acac_data
) -> None:
    configs = read_configurations(acac_data / "acac-pbe-d3-train_300K.xyz")[::10]
    isolated = read_configurations(acac_data / "acac-pbe-d3-isolated_atoms.xyz")

    spec = JobSpec(train_dataset="acac", hyperparameters={"batch_size": 2})
    outcome = run_preflight(spec, configs, foundation)
    # The same predictions judged for a job with isolated-atom E0s (README's acetylacetone job).
    with_isolated_atoms = review(
        configs,
        np.array([labels_of(atoms).energy for atoms in configs]),
        [labels_of(atoms).forces for atoms in configs],
        outcome.predictions,
        known_elements=["H", "C", "O"],
        foundation_e0s={chemical_symbols[z]: e0 for z, e0 in model_e0s(foundation).items()},
        scratch=False,
        e0_method="isolated_atoms",
        isolated_energies={a.get_chemical_symbols()[0]: labels_of(a).energy for a in isolated},
    )

    assert outcome.report.blocking == [], outcome.report.findings
    assert with_isolated_atoms.blocking == [], with_isolated_atoms.findings
    codes = {finding.code for finding in outcome.report.findings}
    assert "absolute_reference" in codes
    assert with_isolated_atoms.suggestion is not None
    assert with_isolated_atoms.suggestion.e0s == "isolated_atoms"


@pytest.mark.parametrize(
    "strategy", [{"name": "naive"}, {"name": "freeze_readout_only"}, {"name": "lora", "rank": 2}]
)
def test_the_cost_probe_trains_what_the_strategy_trains(foundation, strategy) -> None:
    spec = JobSpec(train_dataset="demo", strategy=strategy)
    merged_view = trainable_parameters(spec, foundation)["trainable"]

    probe = trainable_copy(spec, foundation)
    trainable = sum(p.numel() for p in probe.parameters() if p.requires_grad)
    estimate = probe_cost(
        spec, foundation, generate_target_dataset(5, seed=3, system="molecules"), 4, n_train=36
    )

    assert trainable == merged_view
    assert estimate.steps_per_epoch == 8 and estimate.seconds_per_epoch > 0
    assert estimate.peak_memory_mb > 0 and estimate.memory_kind == "process_rss"
