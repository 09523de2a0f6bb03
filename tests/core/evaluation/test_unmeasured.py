"""Issue 25: an evaluation section that cannot run is recorded with its reason; the others run."""

from pathlib import Path

import ase
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from core.data.demo_data import generate_target_dataset
from core.evaluation import suite
from core.evaluation.suite import EvaluationData, evaluate
from core.evaluation.unmeasured import attempt
from core.science.spec import EvaluationSettings
from core.service.stages import WorkStopped


@pytest.fixture(scope="module")
def foundation(demo_foundation: Path) -> torch.nn.Module:
    return torch.load(demo_foundation, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def molecules() -> list[ase.Atoms]:
    return generate_target_dataset(3, seed=4, system="molecules")


def iron_dimer() -> ase.Atoms:
    """Labelled data of an element the demo foundation (EMT's elements) does not know."""
    atoms = ase.Atoms("Fe2", positions=[(0, 0, 0), (0, 0, 2.2)])
    atoms.calc = SinglePointCalculator(atoms, energy=-8.0, forces=np.zeros((2, 3)))
    return atoms


def test_forgetting_data_with_elements_the_models_lack_are_not_measured_not_fatal(
    foundation, molecules
) -> None:
    report = evaluate(
        foundation,
        EvaluationData(test=molecules, replay=[iron_dimer(), *molecules]),
        EvaluationSettings(md=False, dimers=False),
        foundation=foundation,
    )

    assert report.forgetting is None
    assert "Fe" in report.not_measured["forgetting"]
    assert report.accuracy["test"].n_configs == len(molecules)


def test_forgetting_without_a_foundation_is_not_measured_with_the_reason(
    foundation, molecules
) -> None:
    # A model trained from scratch: the foundation's model stands in for it, none is compared.
    report = evaluate(
        foundation,
        EvaluationData(test=molecules, replay=[iron_dimer(), *molecules]),
        EvaluationSettings(md=False, dimers=False),
        foundation=None,
    )

    assert report.forgetting is None
    assert report.not_measured == {"forgetting": suite.NO_FOUNDATION}
    assert "scratch" in report.not_measured["forgetting"]
    assert report.accuracy["test"].n_configs == len(molecules)


def test_a_section_that_crashes_is_recorded_and_the_others_still_run(
    foundation, molecules, monkeypatch
) -> None:
    def crash(*_args, **_kwargs):
        raise RuntimeError("neighbour list overflow inside ASE")

    monkeypatch.setattr(suite, "short_range_repulsion", crash)

    report = evaluate(foundation, EvaluationData(test=molecules), EvaluationSettings(md=False))

    assert report.not_measured == {
        "dimers": "failed with RuntimeError: neighbour list overflow inside ASE"
    }
    assert report.dimers is None and report.accuracy is not None
    assert report.to_json()["not_measured"]


def test_memory_is_named_and_stopped_work_goes_on_up() -> None:
    skipped: dict[str, str] = {}

    def too_big() -> None:
        raise MemoryError("cannot allocate 80 GiB")

    def cancelled() -> None:
        raise WorkStopped("md 1/1")

    assert attempt("md", skipped, too_big) is None
    assert skipped == {"md": "out of memory (MemoryError: cannot allocate 80 GiB)"}
    with pytest.raises(WorkStopped):
        attempt("md", skipped, cancelled)
