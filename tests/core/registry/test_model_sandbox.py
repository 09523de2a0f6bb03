"""Registration reads a model file only in the sandbox, with an allowlist of classes, and keeps
its safe form; nothing in an uploaded file runs, and the rebuilt model is the original."""

import json
import socket
from pathlib import Path

import pytest
import torch
from ase.build import bulk, molecule

from core.errors import InvalidModelFileError
from core.registry.foundations import FoundationRegistry, load_foundation
from core.registry.model_sandbox import SandboxLimits, network_isolation, run_sandboxed
from core.registry.safe_model import read_header
from core.science.inference import predict
from tests.conftest import FOUNDATIONS_DIR
from tests.core.registry.hostile_models import exec_pickle, mace_carrying_exec, plain_mace


def test_a_pickle_calling_numpys_exec_wrapper_is_refused_and_never_runs(
    tmp_path: Path, demo_foundation: Path
) -> None:
    marker = tmp_path / "ran"
    registry = FoundationRegistry(tmp_path / "models")
    bare = exec_pickle(tmp_path / "bare.model", marker)
    carried = mace_carrying_exec(tmp_path / "carried.model", demo_foundation, marker)

    for name, upload in (("bare", bare), ("carried", carried)):
        with pytest.raises(
            InvalidModelFileError, match=r"numpy\.testing\._private\.utils\.runstring"
        ):
            registry.register(name, upload)

    assert not marker.exists()
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())
    assert not registry.exists("bare") and not registry.exists("carried")


def test_a_plain_mace_is_refused_at_registration_naming_why(tmp_path: Path) -> None:
    registry = FoundationRegistry(tmp_path / "models")

    with pytest.raises(InvalidModelFileError, match="fine-tunes only a ScaleShiftMACE"):
        registry.register("plain", plain_mace(tmp_path / "plain.model"))


def test_the_rebuilt_foundation_predicts_exactly_what_the_original_predicts(
    tmp_path: Path, standin
) -> None:
    registry = FoundationRegistry(tmp_path / "models")
    name = standin("mace-multihead", "float32")
    original = torch.load(FOUNDATIONS_DIR / f"{name}.model", weights_only=False)
    cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    cell.rattle(0.05, seed=3)
    water = molecule("H2O")

    registered = registry.register("lab-multihead", FOUNDATIONS_DIR / f"{name}.model")
    rebuilt = load_foundation(registered)

    assert registered.path.suffix == ".safetensors"
    assert type(rebuilt).__name__ == "ScaleShiftMACE" and rebuilt.heads == original.heads
    expected = predict(original.double(), [cell, water])
    found = predict(rebuilt.double(), [cell, water])
    for before, after in zip(expected, found, strict=True):
        assert after.energy == before.energy
        assert (after.forces == before.forces).all()


def test_the_facts_a_request_needs_are_recorded_at_registration(tmp_path: Path, standin) -> None:
    registry = FoundationRegistry(tmp_path / "models")
    name = standin("mace-multihead", "float32")

    registered = registry.register("lab-multihead", FOUNDATIONS_DIR / f"{name}.model")
    _, facts, _ = read_header(registered.path)
    info = registry.info("lab-multihead")

    assert info is not None and info.heads == ("pbe_d3", "r2scan")
    assert info.dtype == "float32" and info.r_max == 5.0 and len(info.elements) == 89
    # The second head's E0s sit 0.4 eV below the first's (the stand-in's recipe).
    assert info.e0s["r2scan"]["Cu"] == pytest.approx(info.e0s["pbe_d3"]["Cu"] - 0.4, abs=1e-5)
    assert facts.parameters == info.parameters > 0


def test_the_sandbox_has_no_secrets_no_network_and_its_limits(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLFT_SECRET_PROBE", "s3cr3t")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    limits = SandboxLimits(memory_mb=2048, cpu_s=30)

    run = run_sandboxed("tests.core.registry.sandbox_probe", [], tmp_path, limits)
    seen = json.loads(run.stdout)

    assert "MLFT_SECRET_PROBE" not in seen["env"] and "HTTPS_PROXY" not in seen["env"]
    allowed = {"PYTHONPATH", "HOME", "TMPDIR", "OMP_NUM_THREADS", "PYTHONDONTWRITEBYTECODE"}
    assert set(seen["env"]) <= allowed | {"LC_CTYPE"}  # LC_CTYPE: Python's own locale coercion
    assert Path(seen["cwd"]) == tmp_path
    assert seen["as"] == 2048 << 20 and seen["cpu"] == 30
    with socket.create_connection(("127.0.0.1", 5432), timeout=2):
        pass  # PostgreSQL is reachable from here...
    if not network_isolation():
        pytest.skip("this kernel refuses a network namespace: documented fallback")
    assert not seen["reached"]  # ...and not from the sandbox


def test_a_model_larger_than_the_memory_limit_is_refused_not_the_service(
    tmp_path: Path, demo_foundation: Path
) -> None:
    from core.registry.model_sandbox import convert_in_sandbox

    # 700 MiB of address space cannot even hold torch: the reader fails (or spins until its CPU
    # limit stops it), and the caller gets a 422.
    with pytest.raises(InvalidModelFileError):
        convert_in_sandbox(
            demo_foundation,
            tmp_path / "out.safetensors",
            "x",
            SandboxLimits(memory_mb=700, cpu_s=15),
        )
    assert not (tmp_path / "out.safetensors").exists()
