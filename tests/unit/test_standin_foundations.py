"""Stand-ins of published foundations: their architecture, what their lone atoms weigh, how the
registry lists them and how one head of a multi-head model is taken out."""

from pathlib import Path

import pytest
import torch

from core.errors import InvalidSpecError
from core.registry.foundation_heads import working_foundation
from core.registry.foundations import (
    FoundationRegistry,
    choose_head,
    default_head,
)
from core.registry.standin_foundations import MACE_MP_0_SMALL, MACE_OFF23_SMALL, MULTIHEAD
from core.science.e0s import isolated_atom_energies, model_e0s, verify_model_e0s
from core.science.inference import predict
from tests.conftest import FOUNDATIONS_DIR
from tests.families import lone_atom_energy_by_formula


def load(name: str) -> torch.nn.Module:
    return torch.load(FOUNDATIONS_DIR / f"{name}.model", map_location="cpu", weights_only=False)


def test_mp0_small_standin_has_mace_mp_0_smalls_architecture(standin) -> None:
    model = load(standin("mace-mp-0-small"))

    assert type(model).__name__ == "ScaleShiftMACE"
    assert [type(block).__name__ for block in model.interactions] == [
        "RealAgnosticResidualInteractionBlock"
    ] * 2
    assert model.atomic_numbers.tolist() == list(range(1, 90))
    assert float(model.r_max) == 6.0
    assert str(model.products[0].linear.irreps_out) == "128x0e"
    assert str(model.readouts[1].linear_1.irreps_out) == "16x0e"
    assert model.interactions[0].conv_tp.irreps_in2.lmax == 3  # max_ell 3
    assert float(model.scale_shift.scale) != 1.0 and float(model.scale_shift.shift) != 0.0
    # MACE-MP-0 small's file is 32 MB of float64 weights.
    assert 3.5e6 < sum(p.numel() for p in model.parameters()) < 4.2e6
    assert next(model.parameters()).dtype == torch.float64


def test_off23_standin_is_organic_and_float32_when_asked(standin) -> None:
    model = load(standin("mace-off23-small", "float32"))

    assert [int(z) for z in model.atomic_numbers] == [1, 6, 7, 8, 9, 15, 16, 17, 35, 53]
    assert float(model.r_max) == 4.5
    assert str(model.products[0].linear.irreps_out) == "96x0e"
    assert next(model.parameters()).dtype == torch.float32


def test_standins_are_cached_by_content(standin) -> None:
    name = standin("mace-off23-small", "float32")
    path = FOUNDATIONS_DIR / f"{name}.model"
    built = path.stat().st_mtime_ns

    assert standin("mace-off23-small", "float32") == name
    assert path.stat().st_mtime_ns == built
    assert MACE_OFF23_SMALL.digest("float32") in name
    assert MACE_OFF23_SMALL.digest("float64") != MACE_OFF23_SMALL.digest("float32")
    assert MACE_MP_0_SMALL.digest("float64") != MULTIHEAD.digest("float64")
    assert (path.with_name(path.name + ".sha256")).is_file()  # pinned like an operator's file
    assert path.with_suffix(".safetensors").is_file()  # and converted to its safe form


def test_a_lone_atoms_energy_is_e0_plus_scale_times_readouts_plus_shift(standin) -> None:
    model = load(standin("mace-off23-small")).double()
    e0s = {symbol: model_e0s(model)[z] for symbol, z in (("H", 1), ("C", 6), ("Cl", 17))}

    found = isolated_atom_energies(model, list(e0s))
    verified = verify_model_e0s(model, e0s)

    for symbol, e0 in e0s.items():
        assert found[symbol] == pytest.approx(lone_atom_energy_by_formula(model, symbol), abs=1e-9)
        # The residual blocks make a lone atom differ from its E0, so E0 alone would be wrong.
        assert abs(found[symbol] - e0) > 1e-3
        offset = verified.lone_atom_interaction_energies[symbol]
        assert found[symbol] == pytest.approx(e0 + offset, abs=1e-9)


def test_listing_reads_heads_elements_r_max_parameters_and_dtype_once(standin, monkeypatch) -> None:
    name = standin("mace-multihead", "float32")
    registry = FoundationRegistry(FOUNDATIONS_DIR)

    info = {item.name: item.info for item in registry.listing()}[name]

    assert info.heads == ("pbe_d3", "r2scan")
    assert info.default_head == "pbe_d3"
    assert len(info.elements) == 89 and info.elements[:2] == ("H", "He")
    assert info.r_max == 5.0
    assert info.dtype == "float32"
    assert info.architecture == "ScaleShiftMACE"
    assert info.parameters == sum(p.numel() for p in load(name).parameters())

    def no_unpickling(*args, **kwargs):
        raise AssertionError("the listing unpickled a model again")

    monkeypatch.setattr(torch, "load", no_unpickling)
    assert {item.name: item.info for item in registry.listing()}[name] == info


@pytest.mark.parametrize(
    ("heads", "expected"),
    [
        (("pt_head", "Default"), "Default"),
        (("omat", "default", "matpes"), "default"),
        (("pt_head", "r2scan"), "r2scan"),
        (("pbe_d3", "r2scan"), "pbe_d3"),
    ],
)
def test_default_head_is_the_one_called_default_else_the_first_non_replay_head(
    heads, expected
) -> None:
    assert default_head(heads) == expected


def test_an_unknown_head_is_refused_naming_the_heads() -> None:
    with pytest.raises(InvalidSpecError, match=r"no head 'pbe'.*pbe_d3, r2scan \(default pbe_d3\)"):
        choose_head("mh", ("pbe_d3", "r2scan"), "pbe")


def test_the_working_foundation_is_the_chosen_head_alone_in_float64(
    standin, tmp_path: Path
) -> None:
    from ase.build import bulk

    name = standin("mace-multihead", "float32")
    registry = FoundationRegistry(FOUNDATIONS_DIR)
    multihead = load(name)
    cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    cell.rattle(0.05, seed=1)

    working, model, head = working_foundation(registry.resolve(name), multihead, "r2scan", tmp_path)

    assert head == "r2scan" and model.heads == ["r2scan"]
    assert next(model.parameters()).dtype == torch.float64
    assert working.path.is_file() and working.sha256 != registry.resolve(name).sha256
    assert float(model.scale_shift.scale) == pytest.approx(0.6)
    assert float(model.scale_shift.shift) == pytest.approx(0.12)
    assert model_e0s(model)[29] == pytest.approx(
        float(multihead.atomic_energies_fn.atomic_energies[1, 28]), abs=1e-6
    )
    # The second head of the multi-head model predicts what the single-head copy predicts.
    from mace.calculators import MACECalculator

    calc = MACECalculator(
        models=[multihead.double()], device="cpu", default_dtype="float64", head="r2scan"
    )
    cell.calc = calc
    expected = cell.get_potential_energy()
    assert predict(model, [cell])[0].energy == pytest.approx(expected, abs=1e-6)


def test_a_downloaded_published_model_registers_under_its_published_name(
    standin, tmp_path: Path
) -> None:
    from core.errors import ConflictError

    downloaded = FOUNDATIONS_DIR / f"{standin('mace-off23-small', 'float32')}.model"
    registry = FoundationRegistry(tmp_path)

    registered = registry.register("mace-off23-small", downloaded)

    resolved = registry.resolve("mace-off23-small")  # the local file: nothing is downloaded
    assert resolved.path == tmp_path / "mace-off23-small.safetensors"  # its safe form alone
    assert resolved.sha256 == registered.sha256
    pin = tmp_path / "mace-off23-small.safetensors.sha256"
    assert pin.read_text().strip() == registered.sha256
    assert not (tmp_path / "mace-off23-small.model").exists()
    listed = {item.name: item for item in registry.listing()}["mace-off23-small"]
    assert listed.source == "local" and listed.info.elements[0] == "H"
    with pytest.raises(ConflictError):
        registry.register("mace-off23-small", downloaded)
