"""Radial distribution functions per element pair and the earth mover's distance between two.

The study (science.md §3) compares a model's RDF with a reference one by the earth mover's
distance (EMD): from scratch 0.685 against 0.05–0.10 for fine-tuned models (NaCl(aq), Cl–O).

Periodic cells get the usual g(r), normalised by the ideal-gas pair density so that g → 1 at
long range. Molecules in vacuum have no density to normalise by; their "RDF" is the distribution
of pair distances (a histogram with unit integral), which is what an EMD needs anyway.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations_with_replacement
from typing import Any

import ase
import numpy as np
from ase.data import chemical_symbols
from ase.neighborlist import neighbor_list

DEFAULT_R_MAX = 6.0  # Å; first and second shells of most liquids and solids
DEFAULT_BIN_WIDTH = 0.05  # Å


@dataclass(frozen=True)
class RDF:
    r: np.ndarray  # bin centres, Å
    pairs: dict[str, np.ndarray]  # "Cl-O" (symbols in alphabetical order) -> g(r) on r
    periodic: bool  # True: g(r) with g -> 1 at long range; False: pair-distance distribution
    n_frames: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "r": self.r.tolist(),
            "pairs": {pair: values.tolist() for pair, values in self.pairs.items()},
            "periodic": self.periodic,
            "n_frames": self.n_frames,
        }


@dataclass(frozen=True)
class RDFComparison:
    emd_per_pair: dict[str, float]  # Å
    mean_emd: float | None  # over the pairs both RDFs have
    unmatched_pairs: tuple[str, ...]  # pairs only one RDF has, so no distance

    def to_dict(self) -> dict[str, Any]:
        return {
            "emd_per_pair": self.emd_per_pair,
            "mean_emd": self.mean_emd,
            "unmatched_pairs": list(self.unmatched_pairs),
        }


def radial_distribution(
    frames: Sequence[ase.Atoms],
    *,
    r_max: float = DEFAULT_R_MAX,
    bin_width: float = DEFAULT_BIN_WIDTH,
) -> RDF:
    """RDF per element pair, averaged over frames (an MD trajectory or a dataset).

    Frames may differ in size and composition; counts and ideal-gas normalisations are summed
    over frames before dividing, so each pair is weighted by how often it occurs. Pairs with no
    distance below r_max are left out.
    """
    if not frames:
        raise ValueError("an RDF needs at least one frame")
    periodic = _periodicity(frames)
    edges = np.arange(0.0, r_max + bin_width / 2, bin_width)
    counts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(edges) - 1))
    ideal_density: dict[str, float] = defaultdict(float)
    for atoms in frames:
        _count_pairs(atoms, edges, counts)
        if periodic:
            _add_ideal_density(atoms, ideal_density)
    shells = 4.0 / 3.0 * np.pi * np.diff(edges**3)
    pairs = {}
    for pair, histogram in sorted(counts.items()):
        # Periodic: over what an ideal gas puts in each shell; else a density with unit area.
        norm = ideal_density[pair] * shells if periodic else histogram.sum() * bin_width
        pairs[pair] = histogram / norm
    return RDF(r=(edges[:-1] + edges[1:]) / 2, pairs=pairs, periodic=periodic, n_frames=len(frames))


def earth_movers_distance(r: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """1D Wasserstein distance (Å) between two non-negative functions on the grid r.

    Each is normalised to a distribution over r; the distance is the area between the two
    cumulative distributions, so a peak moved by d Å is d Å away from where it was.
    """
    cumulative = np.cumsum(_normalised(first)) - np.cumsum(_normalised(second))
    return float(np.sum(np.abs(cumulative[:-1]) * np.diff(r)))


def compare_rdfs(model: RDF, reference: RDF) -> RDFComparison:
    """EMD between a model's RDF and a reference one, for every pair both have.

    A periodic g(r) tends to 1, so its flat tail carries weight and the numbers depend on r_max:
    compare distances computed on the same grid only.
    """
    if model.r.shape != reference.r.shape or not np.allclose(model.r, reference.r):
        raise ValueError("RDFs must share one grid: compute both with the same r_max and bin_width")
    if model.periodic != reference.periodic:
        # A g(r) and a pair-distance distribution differ by a factor r² in their weights.
        raise ValueError("a periodic RDF can only be compared with another periodic one")
    common = sorted(model.pairs.keys() & reference.pairs.keys())
    emd = {
        pair: earth_movers_distance(model.r, model.pairs[pair], reference.pairs[pair])
        for pair in common
    }
    return RDFComparison(
        emd_per_pair=emd,
        mean_emd=float(np.mean(list(emd.values()))) if emd else None,
        unmatched_pairs=tuple(sorted(model.pairs.keys() ^ reference.pairs.keys())),
    )


def pair_label(first: int, second: int) -> str:
    return "-".join(sorted((chemical_symbols[first], chemical_symbols[second])))


def _periodicity(frames: Sequence[ase.Atoms]) -> bool:
    kinds = {tuple(bool(periodic) for periodic in atoms.pbc) for atoms in frames}
    if kinds == {(True, True, True)}:
        return True
    if kinds == {(False, False, False)}:
        return False
    # Slabs and mixed sets have no single density to normalise by.
    raise ValueError(
        f"frames must be all periodic in 3D or all non-periodic; found pbc {sorted(kinds)}"
    )


def _count_pairs(atoms: ase.Atoms, edges: np.ndarray, counts: dict[str, np.ndarray]) -> None:
    # neighbor_list gives each pair twice (i-j and j-i) and includes periodic images, so every
    # atom's full environment is counted, as g(r) around each atom requires.
    first, second, distances = neighbor_list("ijd", atoms, float(edges[-1]))
    numbers = atoms.numbers
    for (z_first, z_second), selected in _by_pair(numbers[first], numbers[second]):
        histogram, _ = np.histogram(distances[selected], bins=edges)
        counts[pair_label(z_first, z_second)] += histogram


def _by_pair(z_first: np.ndarray, z_second: np.ndarray) -> list[tuple[tuple[int, int], np.ndarray]]:
    pairs = []
    for a, b in combinations_with_replacement(np.unique(np.concatenate([z_first, z_second])), 2):
        selected = ((z_first == a) & (z_second == b)) | ((z_first == b) & (z_second == a))
        if selected.any():
            pairs.append(((int(a), int(b)), selected))
    return pairs


def _add_ideal_density(atoms: ase.Atoms, ideal_density: dict[str, float]) -> None:
    """Add the pair counts per unit volume an ideal gas of this frame's composition has.

    Counted like the histogram: ordered pairs, so an A-B pair contributes 2 N_A N_B / V and an
    A-A pair N_A² / V (images of an atom are its neighbours in a periodic crystal).
    """
    numbers, amounts = np.unique(atoms.numbers, return_counts=True)
    volume = atoms.cell.volume
    for (i, a), (j, b) in combinations_with_replacement(enumerate(numbers), 2):
        ordered = 1 if i == j else 2
        ideal_density[pair_label(a, b)] += ordered * amounts[i] * amounts[j] / volume


def _normalised(values: np.ndarray) -> np.ndarray:
    total = values.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("an RDF to compare must be finite and not all zero")
    normalised: np.ndarray = values / total
    return normalised
