"""A foundation saved where cuequivariance was absent is rebuilt in its own Clebsch-Gordan basis
where it is installed (issue 25: a sweep's replay_lora job failed in mace with "contracted
dimensions need to match" once cuequivariance was installed beside the service)."""

import pytest
import torch
from ase.build import bulk

from core.registry.safe_model import read_safe_model, write_safe_model
from core.registry.standin_foundations import StandinRecipe, build_standin
from core.science.inference import predict

TINY = StandinRecipe(
    family="cg-basis",
    atomic_numbers=(29, 79),
    hidden_irreps="8x0e",
    r_max=4.0,
    avg_num_neighbors=8.0,
    radial_mlp=(8,),
)


def test_a_model_saved_without_cuequivariance_keeps_its_basis_where_it_is_installed(
    tmp_path, monkeypatch
) -> None:
    pytest.importorskip("cuequivariance")
    from mace.tools import cg

    monkeypatch.setattr(cg, "CUET_AVAILABLE", False)
    saved = build_standin(TINY, "float64")  # says use_reduced_cg=True, holds e3nn's basis
    monkeypatch.undo()
    path = tmp_path / "model.safetensors"
    write_safe_model(saved, path, "0" * 64)

    rebuilt = read_safe_model(path.read_bytes())

    # mace's training process rebuilds the model from this flag: it must name e3nn's basis.
    assert rebuilt.use_reduced_cg is False
    cells = [bulk("Cu", "fcc", a=3.6, cubic=True), bulk("CuAu", "rocksalt", a=5.0)]
    for atoms in cells:
        atoms.rattle(0.05, seed=1)
    expected = predict(saved, cells)
    found = predict(rebuilt, cells)
    for before, after in zip(expected, found, strict=True):
        assert after.energy == pytest.approx(before.energy, abs=1e-9)
        assert torch.allclose(torch.as_tensor(after.forces), torch.as_tensor(before.forces))


def test_a_model_in_the_reduced_basis_is_rebuilt_in_it(tmp_path) -> None:
    pytest.importorskip("cuequivariance")
    saved = build_standin(TINY, "float64")  # cuequivariance installed: the reduced basis
    path = tmp_path / "model.safetensors"
    write_safe_model(saved, path, "0" * 64)

    rebuilt = read_safe_model(path.read_bytes())

    assert rebuilt.use_reduced_cg is True
    (atoms,) = cells = [bulk("Cu", "fcc", a=3.6, cubic=True)]
    atoms.rattle(0.05, seed=2)
    assert predict(rebuilt, cells)[0].energy == pytest.approx(predict(saved, cells)[0].energy)
