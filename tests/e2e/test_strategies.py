"""Every strategy and E0 method through the real worker, each checked for what it must mean."""

from pathlib import Path

import ase
import numpy as np
import pytest
import torch

from core.data.demo_data import (
    generate_foundation_configurations,
    generate_target_dataset,
    write_extxyz,
)
from core.science.inference import predict
from core.science.model_checks import FROZEN_PREFIXES
from tests.conftest import upload
from tests.e2e.conftest import wait_for_job

pytestmark = pytest.mark.e2e
HCNO = {"H", "C", "N", "O"}
EPOCHS = {"max_num_epochs": 2, "batch_size": 10}
# MD and dimer scans are tested in test_evaluation.py; here they would only cost time.
QUICK = {"md": False, "dimers": False}


def replay_structures(count: int) -> list[ase.Atoms]:
    """Foundation-like configurations of the target's elements: what replay keeps the model on."""
    pool = generate_foundation_configurations(400, seed=7)
    return [atoms for atoms in pool if set(atoms.get_chemical_symbols()) <= HCNO][:count]


def without_labels(configs: list[ase.Atoms]) -> list[ase.Atoms]:
    return [ase.Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc) for a in configs]


@pytest.fixture(scope="module")
def ids(client, tmp_path_factory, target_files) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("strategies")
    with_atoms = generate_target_dataset(
        30, seed=3, system="molecules", include_isolated_atoms=True
    )
    replay = replay_structures(24)
    files = {
        "train": target_files["train"],
        "train_with_atoms": write_extxyz(with_atoms, folder / "with_atoms.extxyz"),
        "replay": write_extxyz(replay, folder / "replay.extxyz"),
        "replay_unlabelled": write_extxyz(without_labels(replay), folder / "bare.extxyz"),
    }
    return {name: upload(client, path)["id"] for name, path in files.items()}


def run_job(client, settings, spec: dict) -> dict:
    response = client.post("/jobs", json={**spec, "hyperparameters": EPOCHS, "evaluation": QUICK})
    assert response.status_code == 201, response.text
    job = wait_for_job(client, response.json()["id"], settings.data_dir / "worker.log")
    assert job["state"] == "succeeded", job["error"]
    return job


def download(client, job_id: str, folder: Path, variant: str = "target") -> torch.nn.Module:
    response = client.get(f"/jobs/{job_id}/model", params={"variant": variant})
    assert response.status_code == 200, response.text
    path = folder / f"{job_id}-{variant}.model"
    path.write_bytes(response.content)
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize(
    ("strategy", "e0s"),
    [
        ("freeze_interactions", "isolated_atoms"),
        ("freeze_readout_only", {"H": 1.0, "C": 2.0, "N": 3.0, "O": 4.0}),
    ],
)
def test_frozen_weights_stay_bit_identical_to_the_foundation(
    client, worker, settings, ids, demo_foundation, tmp_path, strategy, e0s
) -> None:
    job = run_job(
        client,
        settings,
        {"train_dataset": ids["train_with_atoms"], "strategy": {"name": strategy}, "e0s": e0s},
    )

    model = download(client, job["id"], tmp_path)
    foundation = dict(torch.load(demo_foundation, weights_only=False).named_parameters())
    level = job["checks"]["frozen_parameters"]["level"]
    frozen = {n: p for n, p in model.named_parameters() if n.startswith(FROZEN_PREFIXES[level])}
    trained = {n: p for n, p in model.named_parameters() if n not in frozen}
    assert frozen and all(torch.equal(p, foundation[n]) for n, p in frozen.items())
    assert any(not torch.equal(p, foundation[n]) for n, p in trained.items() if n in foundation)
    assert job["e0s"]["method"] == ("isolated_atoms" if e0s == "isolated_atoms" else "explicit")
    if isinstance(e0s, dict):
        assert job["e0s"]["e0s"] == e0s


def test_lora_is_merged_and_reproduces_the_adapters(
    client, worker, settings, ids, tmp_path
) -> None:
    job = run_job(
        client,
        settings,
        {
            "train_dataset": ids["train"],
            "strategy": {"name": "lora", "rank": 2},
            "e0s": "foundation",
            # Preflight blocks the foundation's E0s on these shifted data unless accepted.
            "preflight": {"acknowledge": ["reference_mismatch"]},
        },
    )

    assert job["checks"]["lora_merge_max_energy_difference_ev"] < 1e-8
    assert job["effective_hyperparameters"]["lr"] == 1e-2
    assert any("E0 mismatch" in warning for warning in job["warnings"])
    model = download(client, job["id"], tmp_path)
    assert not any("lora" in name.lower() for name, _ in model.named_parameters())


@pytest.fixture(scope="module")
def replay_jobs(client, worker, settings, ids) -> dict[str, dict]:
    base = {"train_dataset": ids["train"]}
    return {
        "naive": run_job(client, settings, base),
        "multihead_replay": run_job(
            client,
            settings,
            {
                **base,
                "strategy": {"name": "multihead_replay", "replay": {"dataset": ids["replay"]}},
            },
        ),
        "pseudolabel_replay": run_job(
            client,
            settings,
            {
                **base,
                "strategy": {
                    "name": "pseudolabel_replay",
                    "replay": {"dataset": ids["replay_unlabelled"]},
                },
            },
        ),
        "replay_lora": run_job(
            client,
            settings,
            {
                **base,
                "strategy": {
                    "name": "replay_lora",
                    "rank": 2,
                    "replay": {
                        "dataset": ids["replay_unlabelled"],
                        "num_samples": 12,
                        "selection": "fps",
                    },
                },
            },
        ),
    }


def test_replay_jobs_deliver_the_target_head_and_keep_the_full_model(
    client, replay_jobs, tmp_path
) -> None:
    for name in ("multihead_replay", "pseudolabel_replay", "replay_lora"):
        job = replay_jobs[name]
        target = download(client, job["id"], tmp_path)
        full = download(client, job["id"], tmp_path, "multihead")
        assert len(getattr(target, "heads", ["Default"])) == 1
        assert full.heads == ["pt_head", "Default"]
        assert {entry["head"] for entry in job["epochs"]} == {"target", "replay"}
        assert job["checks"]["e0s"]["verified"]
    assert replay_jobs["replay_lora"]["checks"]["replay"]["n_configs"] == 12
    assert any("replay + LoRA" in warning for warning in replay_jobs["replay_lora"]["warnings"])


def test_replay_keeps_the_foundations_predictions_better_than_naive(
    client, replay_jobs, demo_foundation, tmp_path
) -> None:
    structures = replay_structures(24)
    foundation = torch.load(demo_foundation, weights_only=False)
    reference = predict(foundation, structures)

    def force_deviation(job: dict) -> float:
        model = download(client, job["id"], tmp_path)
        predicted = predict(model, structures)
        return float(
            np.sqrt(
                np.mean(
                    np.concatenate(
                        [
                            (p.forces - r.forces).ravel() ** 2
                            for p, r in zip(predicted, reference, strict=True)
                        ]
                    )
                )
            )
        )

    naive = force_deviation(replay_jobs["naive"])
    assert force_deviation(replay_jobs["pseudolabel_replay"]) < naive / 2
    assert force_deviation(replay_jobs["multihead_replay"]) < naive


def test_unlabelled_replay_data_is_refused_for_multihead_replay(client, ids) -> None:
    response = client.post(
        "/jobs",
        json={
            "train_dataset": ids["train"],
            "strategy": {
                "name": "multihead_replay",
                "replay": {"dataset": ids["replay_unlabelled"]},
            },
        },
    )
    assert response.status_code == 422
    assert "pseudolabel" in response.json()["detail"]
