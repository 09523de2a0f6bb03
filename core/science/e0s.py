"""Atomic reference energies (E0s): chosen by the service, written into the model, verified after.

A structure's energy is Σ_atoms E0(Z) plus the learned interaction energy (science.md §2).
mace-torch 0.3.16 can silently replace requested E0s with the foundation's (science.md §5), so the
service computes them here, writes them into a copy of the foundation (`with_e0s`), trains with
`--E0s=foundation` and checks the delivered model (`verify_model_e0s`).

All energies are in eV, per configuration unless named per atom; RMSEs are in meV/atom.
Models with several heads: every function reads and writes head 0 only. That is the head mace's
`--E0s=foundation` and `--E0s=estimated` read, the head `from_config` selects for a configuration
without a head name, and the only head of a single-head export.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import ase
import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from core.errors import E0MismatchError, InvalidSpecError
from core.registry import mace_model
from core.science.inference import predict
from core.science.spec import E0Method, E0MethodName, ModelElements

# science.md §2: an energy error above this (foundation vs data, per atom) means the E0s do not
# match the data. Preflight, admission and the job's own E0 warnings all judge by it.
E0_MISMATCH_MEV_PER_ATOM = 500.0

# Two isolated-atom energies of one element closer than this are the same measurement repeated.
_DUPLICATE_ISOLATED_ATOM_TOL_EV = 1e-6


@dataclass(frozen=True)
class E0Fit:
    method: E0Method
    e0s: dict[str, float]
    # Foundation predictions vs reference energies, with the foundation's own E0s and after
    # swapping in `e0s` (science.md §2 asks to show both); None without a foundation.
    energy_rmse_before: float | None
    energy_rmse_after: float | None
    rank: int | None
    n_configs: int
    # What a reader must know about the values (a rank-deficient fit is not isolated atoms).
    note: str | None = None
    # Issue 25: elements the model keeps that the training data lack carry the foundation's own
    # E0s, written into the model and verified like `e0s` (`for_model_elements`).
    kept_from_foundation: dict[str, float] = field(default_factory=dict)
    # For the E0 table: the foundation's own E0 of each element the model knows, and the
    # isolated-atom energies found in the data (eV), where there are any.
    foundation_e0s: dict[str, float] | None = None
    isolated_atom_references: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_e0s(self) -> dict[str, float]:
        """Every E0 the delivered model carries: the chosen ones and those kept from the
        foundation for elements the training data lack."""
        return {**self.kept_from_foundation, **self.e0s}

    def model_elements(self) -> list[str]:
        return _sorted_by_number(self.model_e0s())


@dataclass(frozen=True)
class E0Residuals:
    """Least-squares per-element offset of the reference energies from the foundation's."""

    delta: dict[str, float]  # eV per atom of each element
    rank: int
    energy_rmse_before: float  # meV/atom, foundation with its own E0s
    energy_rmse_after: float  # meV/atom, after the per-element offset
    mean_offset_per_atom: float  # eV/atom, mean of (reference − foundation) / atoms


def fit_e0_residuals(
    configs: Sequence[ase.Atoms], reference: np.ndarray, predicted: np.ndarray
) -> E0Residuals:
    """(reference − foundation) energies ≈ Σ_Z n_iZ ΔE0_Z, minimum-norm when rank-deficient: the
    correction `estimate_e0s` adds to the foundation's E0s, with the errors before and after."""
    elements = elements_of(configs)
    a = composition_matrix(configs, elements)
    residual = np.asarray(reference, float) - np.asarray(predicted, float)
    delta, rank = _least_squares(a, residual)
    n_atoms = a.sum(axis=1)
    return E0Residuals(
        delta={symbol: float(d) for symbol, d in zip(elements, delta, strict=True)},
        rank=rank,
        energy_rmse_before=per_atom_rmse_mev(residual, n_atoms),
        energy_rmse_after=per_atom_rmse_mev(residual - a @ delta, n_atoms),
        mean_offset_per_atom=float(np.mean(residual / n_atoms)),
    )


def energy_rmse_with_e0s(
    configs: Sequence[ase.Atoms],
    reference: np.ndarray,
    predicted: np.ndarray,
    foundation_e0s: dict[str, float],
    e0s: dict[str, float],
) -> float:
    """The foundation's energy error (meV/atom) once its E0s are replaced by `e0s`: the shift is
    Σ_Z n_iZ (E0_new − E0_foundation), the interaction energy is unchanged, so one set of
    predictions serves. Elements without a new E0 keep the foundation's and shift nothing."""
    elements = elements_of(configs)
    shift = np.array([e0s.get(s, foundation_e0s[s]) - foundation_e0s[s] for s in elements])
    a = composition_matrix(configs, elements)
    residual = np.asarray(reference, float) - np.asarray(predicted, float) - a @ shift
    return per_atom_rmse_mev(residual, a.sum(axis=1))


def average_e0_values(
    configs: Sequence[ase.Atoms], energies: np.ndarray
) -> tuple[dict[str, float], int]:
    """E_i ≈ Σ_Z n_iZ E0_Z on the data alone (e0s='average'): the values and the fit's rank."""
    elements = elements_of(configs)
    a = composition_matrix(configs, elements)
    values, rank = _least_squares(a, np.asarray(energies, float))
    return {symbol: float(v) for symbol, v in zip(elements, values, strict=True)}, rank


def model_e0s(model: torch.nn.Module) -> dict[int, float]:
    """The E0s in the model's atomic_energies buffer, by atomic number (head 0)."""
    row = _head_zero(mace_model.atomic_energies(model).detach().cpu())
    return {z: float(row[i]) for i, z in enumerate(mace_model.atomic_numbers(model))}


def predict_energies(
    model: torch.nn.Module,
    configs: Sequence[ase.Atoms],
    *,
    # Without forces no autograd graph is kept, so larger batches cost little memory.
    batch_size: int = 128,
    device: str = "cpu",
) -> np.ndarray:
    """Total energies (eV) the model predicts for `configs`, in order (head 0, no forces)."""
    _require_model_elements(model, elements_of(configs))
    predictions = predict(model, configs, batch_size=batch_size, device=device, forces=False)
    return np.array([prediction.energy for prediction in predictions], dtype=np.float64)


def estimate_e0s(
    model: torch.nn.Module,
    configs: Sequence[ase.Atoms],
    energies: np.ndarray,
    *,
    batch_size: int = 32,
    device: str = "cpu",
    predicted: np.ndarray | None = None,
) -> E0Fit:
    """The study's recommended method (science.md §2): correct the foundation's E0s by the
    least-squares element-wise offset between reference energies and its predictions.

    `predicted` takes the foundation's energies of `configs` when they were computed before
    (core.science.cache shares them between the jobs of a sweep)."""
    energies = _checked_energies(configs, energies)
    if predicted is None:
        predicted = predict_energies(model, configs, batch_size=batch_size, device=device)
    residuals = fit_e0_residuals(configs, energies, predicted)
    foundation = model_e0s(model)
    e0s = {symbol: foundation[atomic_numbers[symbol]] + d for symbol, d in residuals.delta.items()}
    before, after = _rmse_before_after(model, configs, energies, predicted, e0s)
    note = rank_deficiency_note(residuals.rank, len(e0s))
    return E0Fit("estimated", e0s, before, after, residuals.rank, len(configs), note)


def average_e0s(
    configs: Sequence[ase.Atoms], energies: np.ndarray, *, model: torch.nn.Module | None = None
) -> E0Fit:
    """Least-squares E_i ≈ Σ_Z n_iZ E0_Z on the data alone; science.md §2 advises against it for
    fine-tuning and it is rank-deficient for a single composition."""
    energies = _checked_energies(configs, energies)
    e0s, rank = average_e0_values(configs, energies)
    before, after = _foundation_rmse(model, configs, energies, e0s)
    note = rank_deficiency_note(rank, len(e0s))
    return E0Fit("average", e0s, before, after, rank, len(configs), note)


def data_e0_method(elements: Iterable[str], isolated_atom_elements: Iterable[str]) -> E0MethodName:
    """The E0 method of a model without a foundation whose spec names none (issue 25): isolated
    atoms when the data hold one of every element, as mace itself uses them; otherwise the fit
    on the data, the only method left without a foundation."""
    return "isolated_atoms" if set(elements) <= set(isolated_atom_elements) else "average"


def for_model_elements(
    fit: E0Fit,
    foundation: torch.nn.Module,
    keep: ModelElements,
    *,
    replay_elements: Iterable[str] = (),
) -> E0Fit:
    """`fit` with the foundation's own E0 for every element the fine-tuned model keeps beyond the
    training data: all the foundation's (keep="foundation", mace's --foundation_model_elements),
    or the replay data's only (keep="training"). The foundation's E0s are recorded beside."""
    own = {chemical_symbols[z]: e0 for z, e0 in model_e0s(foundation).items()}
    elements = set(own) if keep == "foundation" else set(fit.e0s) | set(replay_elements)
    _require_model_elements(foundation, sorted(elements))
    kept = {symbol: own[symbol] for symbol in _sorted_by_number(elements - set(fit.e0s))}
    known = _sorted_by_number(elements | set(fit.e0s))
    return replace(
        fit,
        kept_from_foundation=kept,
        foundation_e0s={symbol: own[symbol] for symbol in known},
    )


def isolated_atom_references(
    isolated_atoms: Sequence[ase.Atoms], energies: np.ndarray
) -> dict[str, float] | None:
    """The data's isolated-atom energy of each element (eV), None when the data hold none."""
    found: dict[str, float] = {}
    for i, (atoms, energy) in enumerate(zip(isolated_atoms, energies, strict=True)):
        if len(atoms) == 1 and np.isfinite(energy):
            _add_isolated_atom(found, atoms.get_chemical_symbols()[0], float(energy), i)
    return {symbol: found[symbol] for symbol in _sorted_by_number(found)} or None


def rank_deficiency_note(rank: int, n_elements: int) -> str | None:
    """Said plainly with a fit whose compositions cannot separate the elements' E0s."""
    if rank >= n_elements:
        return None
    return (
        f"rank-deficient fit (rank {rank} for {n_elements} elements: the data have too few "
        "distinct compositions): these E0s are the minimum-norm solution, NOT isolated-atom "
        "energies; only their sums over the data's compositions are determined. For E0s with "
        "physical meaning, add isolated atoms (single atoms without periodicity, config_type "
        "IsolatedAtom) computed at the data's level of theory and use e0s='isolated_atoms'"
    )


def isolated_atom_e0s(
    configs: Sequence[ase.Atoms],
    energies: np.ndarray,
    *,
    model: torch.nn.Module | None = None,
    training: Sequence[ase.Atoms] | None = None,
    training_energies: np.ndarray | None = None,
) -> E0Fit:
    """E0s from the one-atom configurations among `configs` (every one-atom configuration counts
    as an isolated atom, so a one-atom periodic bulk cell must not be passed here).

    With `training` data, the energy RMSEs before and after (and n_configs) are those of the
    training data, as for every other method; not of the isolated atoms, which the chosen E0s
    fit exactly by construction."""
    energies = _checked_energies(configs, energies)
    e0s: dict[str, float] = {}
    for i, (atoms, energy) in enumerate(zip(configs, energies, strict=True)):
        if len(atoms) == 1:
            _add_isolated_atom(e0s, atoms.get_chemical_symbols()[0], float(energy), i)
    missing = [symbol for symbol in elements_of(configs) if symbol not in e0s]
    if missing:
        raise InvalidSpecError(
            f"e0s='isolated_atoms' needs a single-atom configuration of {', '.join(missing)} "
            "computed at the training data's level of theory"
        )
    e0s = {symbol: e0s[symbol] for symbol in _sorted_by_number(e0s)}
    if training is not None and training_energies is not None:
        # Elements the training data lack get no E0 (mace would add them to the model).
        used = {symbol: value for symbol, value in e0s.items() if symbol in elements_of(training)}
        return _fit_without_solve("isolated_atoms", used, model, training, training_energies)
    before, after = _foundation_rmse(model, configs, energies, e0s)
    return E0Fit("isolated_atoms", e0s, before, after, None, len(configs))


def explicit_e0s(
    values: dict[str, float],
    elements: list[str],
    *,
    model: torch.nn.Module | None = None,
    configs: Sequence[ase.Atoms] | None = None,
    energies: np.ndarray | None = None,
) -> E0Fit:
    """E0s given in the job spec; every training element needs one."""
    missing = [symbol for symbol in elements if symbol not in values]
    if missing:
        raise InvalidSpecError(
            f"explicit e0s lack {', '.join(missing)}; give a value in eV for every element of "
            f"the training data ({', '.join(elements)})"
        )
    e0s = {symbol: float(values[symbol]) for symbol in _sorted_by_number(elements)}
    return _fit_without_solve("explicit", e0s, model, configs, energies)


def foundation_e0s(
    model: torch.nn.Module,
    elements: list[str],
    *,
    configs: Sequence[ase.Atoms] | None = None,
    energies: np.ndarray | None = None,
) -> E0Fit:
    """The foundation's own E0s; right only at the foundation's level of theory (science.md §2)."""
    _require_model_elements(model, elements)
    foundation = model_e0s(model)
    e0s = {symbol: foundation[atomic_numbers[symbol]] for symbol in _sorted_by_number(elements)}
    return _fit_without_solve("foundation", e0s, model, configs, energies)


def with_e0s(model: torch.nn.Module, e0s: dict[str, float]) -> torch.nn.Module:
    """A deep copy of `model` whose atomic_energies buffer holds `e0s`; other elements keep the
    model's values. A [n_heads, n_elements] buffer gets them in head 0 only (see module doc)."""
    _require_model_elements(model, list(e0s))
    updated = copy.deepcopy(model)
    buffer = mace_model.atomic_energies(updated)
    index = _element_index(model)
    with torch.no_grad():
        row = _head_zero(buffer)
        for symbol, value in e0s.items():
            row[index[atomic_numbers[symbol]]] = value
    return updated


def isolated_atom_energies(
    model: torch.nn.Module, elements: list[str], *, device: str = "cpu"
) -> dict[str, float]:
    """Energy the model predicts for one atom alone in vacuum (no neighbour within r_max)."""
    atoms = [ase.Atoms(symbol, positions=[(0.0, 0.0, 0.0)]) for symbol in elements]
    energies = predict_energies(model, atoms, device=device)
    return {symbol: float(e) for symbol, e in zip(elements, energies, strict=True)}


def lone_atom_interaction_energies(
    model: torch.nn.Module, elements: list[str], *, device: str = "cpu"
) -> dict[str, float]:
    """What a lone atom's predicted energy holds besides its E0, by element (eV).

    A lone atom has no edge, so every message is zero; what remains is element-only:
    - plain `MACE` with a non-residual first block (the demo foundation): nothing, 0 eV;
    - `ScaleShiftMACE` with residual blocks (MACE-MP-0, MACE-OFF23): the skip connections carry
      the element embedding h_l(Z) through each layer and every readout sees it, so
      E_lone(Z) = E0(Z) + scale · Σ_l readout_l(h_l(Z)) + shift,
      with scale and shift those of the model's (only) head.
    It is read off the model itself with its E0s set to zero, so it is the same function of the
    weights that the delivered model applies, independent of which E0s it carries.
    """
    bare = copy.deepcopy(model)
    with torch.no_grad():
        mace_model.atomic_energies(bare).zero_()
    return isolated_atom_energies(bare, elements, device=device)


@dataclass(frozen=True)
class E0Verification:
    # Energy the model predicts for each element's lone atom, and the part of it beyond E0.
    isolated_atom_energies: dict[str, float]
    lone_atom_interaction_energies: dict[str, float]


def verify_model_e0s(
    model: torch.nn.Module,
    expected: dict[str, float],
    *,
    tol: float = 1e-6,
    every_element: bool = False,
) -> E0Verification:
    """Check that `model` carries `expected` in its atomic_energies buffer and that a lone atom's
    predicted energy is exactly E0 + its lone-atom interaction energy (see
    `lone_atom_interaction_energies`: zero for the demo foundation, scale · readouts + shift for
    ScaleShiftMACE). The buffer check catches mace overwriting the E0s (science.md §5); the
    energy check that the energy a user's calculator gets adds exactly the chosen E0s.
    `every_element`: `expected` names every element of the model (a delivered model).
    """
    buffer = model_e0s(model)
    unexpected = sorted(set(buffer) - {atomic_numbers[symbol] for symbol in expected})
    if every_element and unexpected:
        # Every element the model knows must carry an E0 the job chose or kept on purpose: mace
        # pads the ones it was not given with 0 eV.
        raise E0MismatchError(
            f"the model knows {', '.join(chemical_symbols[z] for z in unexpected)} without an "
            "E0 chosen for it"
        )
    for symbol, value in expected.items():
        found = buffer.get(atomic_numbers[symbol])
        if found is None:
            raise E0MismatchError(f"{symbol}: expected E0 {value!r} eV, the model has no {symbol}")
        _require_close(symbol, value, found, "atomic_energies buffer holds", tol)
    elements = list(expected)
    isolated = isolated_atom_energies(model, elements)
    offsets = lone_atom_interaction_energies(model, elements)
    for symbol, value in expected.items():
        if not abs(isolated[symbol] - (value + offsets[symbol])) <= tol:
            raise E0MismatchError(
                f"{symbol}: a lone atom's predicted energy is {isolated[symbol]!r} eV, but E0 "
                f"{value!r} eV + its lone-atom interaction energy {offsets[symbol]!r} eV is "
                f"{value + offsets[symbol]!r} eV (tolerance {tol:g} eV)"
            )
    return E0Verification(isolated, offsets)


def _head_zero(atomic_energies: torch.Tensor) -> torch.Tensor:
    # mace stores [n_elements] for one head and [n_heads, n_elements] for several.
    return atomic_energies if atomic_energies.ndim == 1 else atomic_energies[0]


def _element_index(model: torch.nn.Module) -> dict[int, int]:
    return {z: i for i, z in enumerate(mace_model.atomic_numbers(model))}


def _require_model_elements(model: torch.nn.Module, elements: Sequence[str]) -> None:
    known = _element_index(model)
    missing = [symbol for symbol in elements if atomic_numbers[symbol] not in known]
    if missing:
        covered = ", ".join(chemical_symbols[z] for z in sorted(known))
        raise InvalidSpecError(
            f"the foundation model has no {', '.join(missing)}; it covers {covered}"
        )


def _sorted_by_number(symbols: Iterable[str]) -> list[str]:
    return sorted(symbols, key=lambda symbol: atomic_numbers[symbol])


def elements_of(configs: Sequence[ase.Atoms]) -> list[str]:
    return _sorted_by_number({symbol for atoms in configs for symbol in atoms.symbols})


def composition_matrix(configs: Sequence[ase.Atoms], elements: Sequence[str]) -> np.ndarray:
    """A_iZ = number of atoms of element Z in configuration i; elements not listed are skipped."""
    columns = {symbol: j for j, symbol in enumerate(elements)}
    counts = np.zeros((len(configs), len(elements)))
    for i, atoms in enumerate(configs):
        for symbol in atoms.symbols:
            if symbol in columns:
                counts[i, columns[symbol]] += 1
    return counts


def _least_squares(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    # lstsq (SVD) returns the minimum-norm solution when the composition matrix is rank-deficient
    # (one composition, or elements always in the same ratio), as science.md §2 prescribes.
    solution, _, rank, _ = np.linalg.lstsq(a, b, rcond=None)
    return solution, int(rank)


def _require_close(symbol: str, expected: float, found: float, where: str, tol: float) -> None:
    if not abs(found - expected) <= tol:
        raise E0MismatchError(
            f"{symbol}: expected E0 {expected!r} eV, but the model's {where} {found!r} eV "
            f"(difference {found - expected:+.3g} eV, tolerance {tol:g} eV)"
        )


def _checked_energies(configs: Sequence[ase.Atoms], energies: np.ndarray) -> np.ndarray:
    energies = np.asarray(energies, dtype=np.float64)
    if energies.shape != (len(configs),):
        raise ValueError(f"{len(configs)} configurations but energies of shape {energies.shape}")
    if not configs:
        raise InvalidSpecError("no configurations with reference energies to fit E0s to")
    bad = np.flatnonzero(~np.isfinite(energies))
    if bad.size:
        raise InvalidSpecError(f"config {int(bad[0])}: no finite reference energy")
    return energies


def _add_isolated_atom(e0s: dict[str, float], symbol: str, energy: float, index: int) -> None:
    previous = e0s.setdefault(symbol, energy)
    if abs(previous - energy) > _DUPLICATE_ISOLATED_ATOM_TOL_EV:
        raise InvalidSpecError(
            f"config {index}: isolated {symbol} has energy {energy!r} eV, but an earlier isolated "
            f"{symbol} has {previous!r} eV; keep one isolated atom per element"
        )


def _fit_without_solve(
    method: E0Method,
    e0s: dict[str, float],
    model: torch.nn.Module | None,
    configs: Sequence[ase.Atoms] | None,
    energies: np.ndarray | None,
) -> E0Fit:
    if configs is None or energies is None:
        return E0Fit(method, e0s, None, None, None, 0 if configs is None else len(configs))
    energies = _checked_energies(configs, energies)
    before, after = _foundation_rmse(model, configs, energies, e0s)
    return E0Fit(method, e0s, before, after, None, len(configs))


def _foundation_rmse(
    model: torch.nn.Module | None,
    configs: Sequence[ase.Atoms],
    energies: np.ndarray,
    e0s: dict[str, float],
) -> tuple[float | None, float | None]:
    if model is None:
        return None, None
    predicted = predict_energies(model, configs)
    return _rmse_before_after(model, configs, energies, predicted, e0s)


def _rmse_before_after(
    model: torch.nn.Module,
    configs: Sequence[ase.Atoms],
    energies: np.ndarray,
    predicted: np.ndarray,
    e0s: dict[str, float],
) -> tuple[float, float]:
    _require_model_elements(model, list(e0s))
    foundation = {chemical_symbols[z]: e0 for z, e0 in model_e0s(model).items()}
    n_atoms = np.array([len(atoms) for atoms in configs], dtype=np.float64)
    before = per_atom_rmse_mev(energies - predicted, n_atoms)
    return before, energy_rmse_with_e0s(configs, energies, predicted, foundation, e0s)


def per_atom_rmse_mev(residual: np.ndarray, n_atoms: np.ndarray) -> float:
    return float(np.sqrt(np.mean((residual / n_atoms) ** 2)) * 1000.0)
