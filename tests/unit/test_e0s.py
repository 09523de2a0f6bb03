"""E0 methods on a tiny untrained MACE (science.md §2) and the check that a model carries its E0s
(science.md §5)."""

from collections.abc import Iterator
from contextlib import contextmanager

import ase
import numpy as np
import pytest
import torch
from ase.data import atomic_numbers
from mace import modules
from mace.data import KeySpecification, config_from_atoms
from mace.data.utils import estimate_e0s_from_foundation
from mace.tools import AtomicNumberTable

from core.errors import E0MismatchError, InvalidSpecError
from core.science.e0s import (
    E0Fit,
    average_e0s,
    data_e0_method,
    estimate_e0s,
    explicit_e0s,
    for_model_elements,
    foundation_e0s,
    isolated_atom_e0s,
    isolated_atom_energies,
    isolated_atom_references,
    model_e0s,
    predict_energies,
    verify_model_e0s,
    with_e0s,
)

ELEMENTS = ["H", "C", "O", "Cu"]
MODEL_E0S = {"H": -1.17, "C": -8.03, "O": -4.92, "Cu": -3.71}
OFFSETS = {"H": 0.8, "C": -1.5, "O": 2.25, "Cu": -3.0}


@contextmanager
def float64_default() -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_model(
    *, atomic_inter_shift: float = 0.0, heads: list[str] | None = None, seed: int = 0
) -> torch.nn.Module:
    e0s = np.array([MODEL_E0S[symbol] for symbol in ELEMENTS])
    if heads is not None:
        e0s = np.stack([e0s + 10.0 * h for h in range(len(heads))])
    # e3nn loads its constants with torch.load, which only works once `import mace` has relaxed
    # torch's weights_only default; a top-level import would be sorted before mace.
    from e3nn import o3

    torch.manual_seed(seed)
    with float64_default():
        return modules.ScaleShiftMACE(
            r_max=4.0,
            num_bessel=4,
            num_polynomial_cutoff=5,
            max_ell=2,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
            num_interactions=2,
            num_elements=len(ELEMENTS),
            hidden_irreps=o3.Irreps("8x0e+8x1o"),
            MLP_irreps=o3.Irreps("8x0e"),
            atomic_energies=e0s,
            avg_num_neighbors=4.0,
            atomic_numbers=[atomic_numbers[symbol] for symbol in ELEMENTS],
            correlation=2,
            gate=torch.nn.functional.silu,
            heads=heads,
            atomic_inter_scale=1.0,
            atomic_inter_shift=atomic_inter_shift,
        ).eval()


def random_cluster(rng: np.random.Generator, symbols: list[str]) -> ase.Atoms:
    positions: list[np.ndarray] = []
    while len(positions) < len(symbols):
        candidate = rng.uniform(0.0, 3.5, size=3)
        if all(np.linalg.norm(candidate - p) > 1.0 for p in positions):
            positions.append(candidate)
    return ase.Atoms(symbols, positions=positions)


def random_clusters(n: int, seed: int) -> list[ase.Atoms]:
    rng = np.random.default_rng(seed)
    return [
        random_cluster(rng, list(rng.choice(ELEMENTS, size=rng.integers(2, 8)))) for _ in range(n)
    ]


def offset_energy(atoms: ase.Atoms) -> float:
    return sum(OFFSETS[symbol] for symbol in atoms.symbols)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model()


@pytest.fixture(scope="module")
def clusters() -> list[ase.Atoms]:
    return random_clusters(24, seed=1)


@pytest.fixture(scope="module")
def predictions(model, clusters) -> np.ndarray:
    return predict_energies(model, clusters, batch_size=5)


def test_batched_predictions_equal_one_config_at_a_time(model, clusters, predictions):
    one_by_one = [predict_energies(model, [atoms], batch_size=1)[0] for atoms in clusters]

    np.testing.assert_allclose(predictions, one_by_one, rtol=0, atol=1e-9)
    e0_sums = [sum(MODEL_E0S[symbol] for symbol in atoms.symbols) for atoms in clusters]
    assert np.abs(predictions - e0_sums).max() > 1e-3  # the interaction energy is really there


def test_predictions_do_not_depend_on_torch_default_dtype(model, clusters, predictions):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        in_float32_process = predict_energies(model, clusters)
    finally:
        torch.set_default_dtype(previous)

    np.testing.assert_allclose(in_float32_process, predictions, rtol=0, atol=1e-9)
    assert torch.get_default_dtype() == previous


def test_predictions_leave_a_float32_training_mode_model_as_it_was(model, clusters, predictions):
    float32_model = build_model().float().train()

    energies = predict_energies(float32_model, clusters)

    np.testing.assert_allclose(energies, predictions, rtol=0, atol=1e-3)
    assert float32_model.training
    assert float32_model.atomic_energies_fn.atomic_energies.dtype == torch.float32


def test_estimated_e0s_equal_mace_estimate_e0s_from_foundation(model, clusters, predictions):
    rng = np.random.default_rng(7)
    noise = rng.normal(0.0, 0.1, len(clusters))
    energies = predictions + [offset_energy(a) for a in clusters] + noise
    keys = KeySpecification(info_keys={"energy": "REF_energy"})
    mace_configs = []
    for atoms, energy in zip(clusters, energies, strict=True):
        labelled = atoms.copy()
        labelled.info["REF_energy"] = energy
        mace_configs.append(config_from_atoms(labelled, key_specification=keys))
    zs = [atomic_numbers[symbol] for symbol in ELEMENTS]

    fit = estimate_e0s(model, clusters, energies, batch_size=7)
    with float64_default():
        by_mace = estimate_e0s_from_foundation(
            foundation_model=with_e0s(model, {}),
            foundation_e0s=model_e0s(model),
            collections_train=mace_configs,
            z_table=AtomicNumberTable(zs),
        )

    assert list(fit.e0s) == ELEMENTS
    for symbol in ELEMENTS:
        assert fit.e0s[symbol] == pytest.approx(by_mace[atomic_numbers[symbol]], abs=1e-6)


def test_estimated_e0s_recover_element_offsets_and_remove_the_initial_energy_error(
    model, clusters, predictions
):
    energies = predictions + [offset_energy(a) for a in clusters]

    fit = estimate_e0s(model, clusters, energies)

    assert fit.method == "estimated"
    assert fit.rank == len(ELEMENTS)
    assert fit.n_configs == len(clusters)
    for symbol in ELEMENTS:
        assert fit.e0s[symbol] == pytest.approx(MODEL_E0S[symbol] + OFFSETS[symbol], abs=1e-8)
    assert fit.energy_rmse_before > 500.0  # meV/atom: science.md §2's E0-mismatch signature
    assert fit.energy_rmse_after < 1e-6


def test_single_composition_is_rank_deficient_with_minimum_norm_solution(model):
    rng = np.random.default_rng(3)
    waters = [random_cluster(rng, ["O", "H", "H"]) for _ in range(6)]
    residual = 1.5
    energies = predict_energies(model, waters) + residual

    fit = estimate_e0s(model, waters, energies)

    assert fit.rank == 1
    # The minimum-norm ΔE0 solving 2 ΔH + ΔO = residual is parallel to the composition (2, 1).
    delta_h = fit.e0s["H"] - MODEL_E0S["H"]
    delta_o = fit.e0s["O"] - MODEL_E0S["O"]
    assert delta_h == pytest.approx(2 * residual / 5, abs=1e-9)
    assert delta_o == pytest.approx(residual / 5, abs=1e-9)
    assert fit.energy_rmse_after < 1e-6

    averaged = average_e0s(waters, energies)
    assert averaged.rank == 1
    assert set(averaged.e0s) == {"H", "O"}


def test_average_e0s_fit_the_data_alone_and_report_the_foundation_error_when_given_one(
    model, clusters, predictions
):
    energies = predictions + [offset_energy(a) for a in clusters]

    alone = average_e0s(clusters, energies)
    with_foundation = average_e0s(clusters, energies, model=model)

    assert alone.rank == len(ELEMENTS)
    assert alone.energy_rmse_before is None and alone.energy_rmse_after is None
    assert with_foundation.e0s == alone.e0s
    assert with_foundation.energy_rmse_before == pytest.approx(
        estimate_e0s(model, clusters, energies).energy_rmse_before
    )
    assert with_foundation.energy_rmse_after is not None


def test_foundation_e0s_keep_the_models_values_so_the_error_is_unchanged(
    model, clusters, predictions
):
    energies = predictions + [offset_energy(a) for a in clusters]

    fit = foundation_e0s(model, ["O", "H"], configs=clusters, energies=energies)

    assert fit.e0s == {"H": MODEL_E0S["H"], "O": MODEL_E0S["O"]}
    assert fit.energy_rmse_after == pytest.approx(fit.energy_rmse_before)
    assert fit.energy_rmse_before > 500.0


def test_explicit_e0s_equal_to_the_true_ones_remove_the_energy_error(model, clusters, predictions):
    energies = predictions + [offset_energy(a) for a in clusters]
    true_e0s = {symbol: MODEL_E0S[symbol] + OFFSETS[symbol] for symbol in ELEMENTS}

    fit = explicit_e0s(true_e0s, ELEMENTS, model=model, configs=clusters, energies=energies)

    assert fit.e0s == true_e0s
    assert fit.energy_rmse_after < 1e-6
    assert fit.to_dict()["e0s"] == true_e0s


def test_explicit_e0s_missing_an_element_are_refused():
    with pytest.raises(InvalidSpecError, match="Cu"):
        explicit_e0s({"H": -1.0, "O": -2.0}, ["H", "O", "Cu"])


def test_isolated_atom_e0s_take_the_single_atom_energies():
    water = ase.Atoms("H2O", positions=[(0, 0, 0), (1, 0, 0), (0, 1, 0)])
    configs = [ase.Atoms("H"), ase.Atoms("O"), water]

    fit = isolated_atom_e0s(configs, np.array([-1.1, -2.2, -9.9]))

    assert fit == E0Fit("isolated_atoms", {"H": -1.1, "O": -2.2}, None, None, None, 3)


def test_isolated_atom_e0s_without_an_element_are_refused():
    configs = [ase.Atoms("H"), ase.Atoms("H2O", positions=[(0, 0, 0), (1, 0, 0), (0, 1, 0)])]

    with pytest.raises(InvalidSpecError, match="O"):
        isolated_atom_e0s(configs, np.array([-1.1, -9.9]))


def test_elements_the_model_lacks_are_refused(model):
    ammonia = ase.Atoms("NH3", positions=[(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)])

    with pytest.raises(InvalidSpecError, match="no N"):
        estimate_e0s(model, [ammonia], np.array([-20.0]))


def test_with_e0s_writes_a_copy_whose_isolated_atoms_have_the_new_e0s(model):
    new = {"H": -13.6, "Cu": 2.5}

    updated = with_e0s(model, new)
    found = verify_model_e0s(updated, new)

    assert found.isolated_atom_energies == pytest.approx(new, abs=1e-9)
    assert found.lone_atom_interaction_energies == pytest.approx({"H": 0.0, "Cu": 0.0}, abs=1e-12)
    assert isolated_atom_energies(updated, ["C"])["C"] == pytest.approx(MODEL_E0S["C"], abs=1e-9)
    assert model_e0s(model)[1] == MODEL_E0S["H"]  # the original is untouched


def test_a_model_with_other_e0s_fails_verification_naming_the_element(model):
    expected = {**MODEL_E0S, "O": MODEL_E0S["O"] + 0.01}

    with pytest.raises(E0MismatchError, match=r"^O: expected E0 -4\.91"):
        verify_model_e0s(model, expected)


def test_a_shifted_models_lone_atom_is_its_e0_plus_the_shift_and_verifies():
    # Non-residual first block: no element embedding reaches the readouts without neighbours,
    # so the lone-atom interaction energy is the ScaleShift shift alone.
    shifted = build_model(atomic_inter_shift=0.3)

    found = verify_model_e0s(shifted, MODEL_E0S)

    assert found.lone_atom_interaction_energies == pytest.approx(
        dict.fromkeys(MODEL_E0S, 0.3), abs=1e-12
    )
    expected = {symbol: e0 + 0.3 for symbol, e0 in MODEL_E0S.items()}
    assert found.isolated_atom_energies == pytest.approx(expected, abs=1e-9)


def test_a_shifted_model_with_other_e0s_fails_on_the_buffer():
    shifted = build_model(atomic_inter_shift=0.3)
    # E0 + shift would match the lone atom's energy: only the buffer tells them apart.
    lone_atom_values = {symbol: e0 + 0.3 for symbol, e0 in MODEL_E0S.items()}

    with pytest.raises(E0MismatchError, match="atomic_energies buffer holds"):
        verify_model_e0s(shifted, lone_atom_values)


def test_with_e0s_on_a_multihead_model_writes_head_zero_only():
    multihead = build_model(heads=["target", "pt_head"])
    before = multihead.atomic_energies_fn.atomic_energies.clone()

    updated = with_e0s(multihead, {"O": -7.0})

    buffer = updated.atomic_energies_fn.atomic_energies
    assert buffer.shape == (2, len(ELEMENTS))
    assert buffer[0, ELEMENTS.index("O")] == -7.0
    torch.testing.assert_close(buffer[1], before[1])
    assert model_e0s(updated)[8] == -7.0
    found = verify_model_e0s(updated, {"O": -7.0}).isolated_atom_energies
    assert found["O"] == pytest.approx(-7.0, abs=1e-9)


def test_isolated_atom_e0s_report_their_energy_error_on_the_training_data(model):
    # Issue 18 item 7: the RMSE after is that of the training data, not of the isolated atoms
    # (which the chosen E0s fit exactly, giving a meaningless 0.0 over the atoms).
    water = ase.Atoms("H2O", positions=[(0, 0, 0), (0.96, 0, 0), (-0.24, 0.93, 0)])
    dimer = ase.Atoms("H2", positions=[(0, 0, 0), (0.74, 0, 0)])
    isolated = [ase.Atoms("H"), ase.Atoms("O")]

    fit = isolated_atom_e0s(
        isolated,
        np.array([-13.6, -2040.0]),
        model=model,
        training=[water, dimer],
        training_energies=np.array([-2080.0, -31.0]),
    )

    assert fit.e0s == {"H": -13.6, "O": -2040.0}
    assert fit.n_configs == 2
    assert fit.energy_rmse_after is not None and fit.energy_rmse_after > 1.0


def test_a_rank_deficient_fit_says_its_e0s_are_not_isolated_atom_energies():
    same_composition = [
        ase.Atoms("H2O", positions=[(0, 0, 0), (0.96, 0, 0), (-0.24, 0.93, 0)]),
        ase.Atoms("H2O", positions=[(0, 0, 0), (0.98, 0, 0), (-0.25, 0.94, 0)]),
    ]

    fit = average_e0s(same_composition, np.array([-2080.0, -2080.1]))

    assert fit.rank == 1
    assert "NOT isolated-atom energies" in fit.note
    assert "e0s='isolated_atoms'" in fit.note


def test_elements_the_training_data_lack_keep_the_foundations_e0s_and_are_verified(model):
    # Issue 25: a fine-tuned model knows every foundation element; the data only had H and O.
    fit = E0Fit("estimated", {"H": -13.6, "O": -2.5}, None, None, 2, 5)

    kept = for_model_elements(fit, model, "foundation")
    delivered = with_e0s(model, kept.e0s)

    assert kept.kept_from_foundation == {"C": MODEL_E0S["C"], "Cu": MODEL_E0S["Cu"]}
    assert kept.model_elements() == ["H", "C", "O", "Cu"]
    assert kept.foundation_e0s == MODEL_E0S
    assert verify_model_e0s(delivered, kept.model_e0s(), every_element=True)
    # A model carrying an element whose E0 nobody chose (mace pads with 0 eV) fails.
    with pytest.raises(E0MismatchError, match="knows C, Cu without an E0"):
        verify_model_e0s(delivered, fit.e0s, every_element=True)


def test_training_elements_keep_only_the_replay_datas_foundation_e0s(model):
    fit = E0Fit("estimated", {"H": -13.6}, None, None, 1, 5)

    kept = for_model_elements(fit, model, "training", replay_elements=["H", "Cu"])

    assert kept.model_e0s() == {"H": -13.6, "Cu": MODEL_E0S["Cu"]}


def test_without_a_foundation_the_data_s_isolated_atoms_give_the_e0s_when_complete():
    assert data_e0_method({"Cu", "Au"}, {"Au", "Cu", "O"}) == "isolated_atoms"
    assert data_e0_method({"Cu", "Au"}, {"Cu"}) == "average"
    atoms = [ase.Atoms("Cu"), ase.Atoms("Au"), ase.Atoms("Cu2", positions=[(0, 0, 0), (2, 0, 0)])]
    assert isolated_atom_references(atoms, np.array([-1.0, -2.0, -5.0])) == {"Cu": -1.0, "Au": -2.0}
    assert isolated_atom_references(atoms[2:], np.array([-5.0])) is None
