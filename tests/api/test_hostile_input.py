"""Inputs a hostile (or careless) user sends: each gets a 4xx that says why, never a 5xx, and
a foundation name never reaches the file system as a path (issue 17, items 1 and 3-6)."""

import json
import shutil

import pytest

from tests.conftest import upload

TRAVERSAL_NAMES = [
    "../artifacts/jobs/0123456789abcdef0123456789abcdef/model",
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    "mace-demo-emt/../mace-demo-emt",
    "mace-demo-emt\x00.model",
    "..\\..\\windows",
    "mace-demo-emt\\x",
]


@pytest.fixture(scope="module")
def train_id(client, target_files) -> str:
    return upload(client, target_files["train"])["id"]


@pytest.fixture(scope="module")
def held_out_id(client, target_files) -> str:
    return upload(client, target_files["test"])["id"]


def _bodies_naming(name: str, train_id: str) -> dict[str, dict]:
    """Every request body that names a foundation model, naming `name`."""
    return {
        "/jobs": {"train_dataset": train_id, "foundation_model": name},
        "/preflight": {"train_dataset": train_id, "foundation_model": name},
        "/evaluations": {"model": {"foundation_model": name}, "dataset": train_id},
        "/replay-sets": {"train_dataset": train_id, "foundation_model": name},
        "/sweeps": {"base": {"train_dataset": train_id, "foundation_model": name}},
    }


@pytest.mark.parametrize("name", TRAVERSAL_NAMES)
def test_foundation_names_that_are_paths_get_422_on_every_route(client, train_id, name) -> None:
    for route, body in _bodies_naming(name, train_id).items():
        response = client.post(route, json=body)

        assert response.status_code == 422, f"{route}: {response.status_code} {response.text}"
        assert "not a registry name" in response.text or "NUL" in response.text, route


def test_another_jobs_model_cannot_be_named_as_a_foundation(
    client, train_id, settings, demo_foundation
) -> None:
    # The file is there, where the reported attack found it, and it is a real model.
    folder = settings.data_dir / "artifacts" / "jobs" / "0123456789abcdef0123456789abcdef"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(demo_foundation, folder / "model.model")
    relative = f"../{folder.relative_to(settings.data_dir)}/model"
    absolute = str(folder / "model")

    for name in (relative, absolute):
        for route, body in _bodies_naming(name, train_id).items():
            assert client.post(route, json=body).status_code == 422, route


def test_a_symlink_in_the_models_folder_is_not_listed_or_usable(client, train_id, settings) -> None:
    link = settings.resolved_models_dir / "linked-passwd.model"
    link.symlink_to("/etc/passwd")
    try:
        names = [item["name"] for item in client.get("/foundation-models").json()]
        response = client.post(
            "/jobs", json={"train_dataset": train_id, "foundation_model": "linked-passwd"}
        )
    finally:
        link.unlink()

    assert "linked-passwd" not in names
    assert response.status_code == 422
    assert "unknown foundation model" in response.json()["detail"]


NON_FINITE_SPECS = {
    "lr": '"hyperparameters": {"lr": NaN}',
    "energy_weight": '"hyperparameters": {"energy_weight": Infinity}',
    "clip_grad": '"hyperparameters": {"clip_grad": -Infinity}',
    "weight_decay": '"hyperparameters": {"weight_decay": NaN}',
    "valid_fraction": '"valid_fraction": NaN',
    "train_fraction": '"train_fraction": Infinity',
    "e0s": '"e0s": {"H": NaN, "C": -1.0, "N": -1.0, "O": -1.0}',
    "lora_alpha": '"strategy": {"name": "lora", "alpha": Infinity}',
}


@pytest.mark.parametrize("route", ["/jobs", "/preflight"])
@pytest.mark.parametrize("field", sorted(NON_FINITE_SPECS))
def test_bare_nan_and_infinity_get_a_readable_422(client, train_id, route, field) -> None:
    body = f'{{"train_dataset": "{train_id}", {NON_FINITE_SPECS[field]}}}'

    response = client.post(route, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 422, response.text
    # The body is strict JSON (no bare NaN), so any client can read it.
    detail = json.loads(response.text, parse_constant=pytest.fail)["detail"]
    assert any("finite" in item["msg"] for item in detail), detail


def test_non_finite_numbers_in_sweeps_and_evaluations_get_422(client, train_id) -> None:
    sweep = f'{{"base": {{"train_dataset": "{train_id}"}}, "grid": {{"lr": [NaN]}}}}'
    evaluation = (
        '{"kind": "rss_holes", "model": {"foundation_model": "mace-demo-emt"}, '
        '"settings": {"rss_holes": {"compositions": ["Cu4"], "fmax_ev_per_a": Infinity}}}'
    )
    for route, body in (("/sweeps", sweep), ("/evaluations", evaluation)):
        response = client.post(route, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, f"{route}: {response.text}"
        json.loads(response.text, parse_constant=pytest.fail)


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/%00",
        "/jobs/%00/cancel",
        "/jobs/%00/events",
        "/jobs/%00/model",
        "/jobs/%00/report",
        "/datasets/%00",
        "/evaluations/%00",
        "/replay-sets/%00",
        "/sweeps/%00",
        "/jobs/a%00b",
    ],
)
def test_a_nul_byte_in_a_path_id_is_a_404(client, path) -> None:
    method = "POST" if path.endswith("/cancel") else "GET"

    response = client.request(method, path)

    assert response.status_code == 404, response.text


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/jobs", {"train_dataset": "a\x00b"}),
        ("/jobs", {"train_dataset": "TRAIN", "test_dataset": "\x00"}),
        ("/jobs", {"train_dataset": "TRAIN", "level_of_theory": "PBE\x00"}),
        ("/jobs", {"train_dataset": "TRAIN", "split": {"group_by": "config\x00type"}}),
        ("/preflight", {"train_dataset": "TRAIN\x00"}),
        ("/evaluations", {"model": {"job": "\x00"}, "dataset": "TRAIN"}),
        ("/replay-sets", {"train_dataset": "TRAIN", "pool_datasets": ["\x00"]}),
        ("/sweeps", {"base": {"train_dataset": "TRAIN\x00"}}),
    ],
)
def test_a_nul_byte_in_a_json_string_is_a_422(client, train_id, route, body) -> None:
    body = json.loads(json.dumps(body).replace("TRAIN", train_id))

    response = client.post(route, json=body)

    assert response.status_code == 422, response.text
    assert "NUL" in response.text


def _unique_bytes(path, note: str) -> bytes:
    # The same bytes uploaded twice return the existing dataset (200): these must be new.
    return path.read_bytes().replace(b"Properties=", f"note={note} Properties=".encode(), 1)


def test_a_300_character_upload_filename_is_cut_to_fit(client, target_files) -> None:
    name = "x" * 300 + ".extxyz"
    content = _unique_bytes(target_files["train"], "long_name")
    response = client.post("/datasets", files={"file": (name, content)})

    assert response.status_code == 201, response.text
    stored = response.json()["name"]
    assert len(stored) <= 255 and stored.endswith(".extxyz")


def test_a_nul_byte_in_an_upload_filename_is_dropped(client, target_files) -> None:
    content = _unique_bytes(target_files["train"], "nul_name")
    response = client.post("/datasets", files={"file": ("tr\x00ain.extxyz", content)})

    assert response.status_code == 201, response.text
    assert "\x00" not in response.json()["name"]


SCRATCH = {"name": "scratch"}
EXPLICIT_E0S = {"H": -13.6, "C": -1026.0, "N": -1484.0, "O": -2040.0}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hyperparameters": {"seed": -1}}, "greater than or equal to 0"),
        ({"hyperparameters": {"seed": 2**70}}, "less than or equal to 4294967295"),
        ({"hyperparameters": {"patience": 2**70}}, "less than or equal"),
        ({"e0s": {**EXPLICIT_E0S, "H": 1e308}}, "|E0| <"),
        ({"e0s": {**EXPLICIT_E0S, "C": -2e7}}, "|E0| <"),
        (
            {"strategy": {**SCRATCH, "architecture": {"hidden_irreps": "garbage"}}},
            "cannot be parsed as irreps",
        ),
        (
            {"strategy": {**SCRATCH, "architecture": {"hidden_irreps": "16x0e+8x1o"}}},
            "same multiplicity",
        ),
        (
            {"strategy": {**SCRATCH, "architecture": {"hidden_irreps": "16x1o"}}},
            "needs scalars",
        ),
        (
            {"strategy": {**SCRATCH, "architecture": {"hidden_irreps": "16x0e+16x9o"}}},
            "at most 3",
        ),
    ],
)
def test_absurd_values_are_refused_at_submission(client, train_id, change, message) -> None:
    body = {"train_dataset": train_id, **change}
    if "strategy" in change:
        body.setdefault("e0s", EXPLICIT_E0S)  # a scratch model has no foundation E0s

    response = client.post("/jobs", json=body)

    assert response.status_code == 422, response.text
    assert message in response.text


def test_replay_set_seeds_are_bounded(client, train_id) -> None:
    for seed in (-1, 2**70):
        response = client.post("/replay-sets", json={"train_dataset": train_id, "seed": seed})
        assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "roles",
    [
        ("train_dataset", "test_dataset"),
        ("train_dataset", "valid_dataset"),
        ("valid_dataset", "test_dataset"),
    ],
)
def test_one_dataset_in_two_roles_is_refused(client, train_id, held_out_id, roles) -> None:
    body = {"train_dataset": train_id}
    shared = train_id if "train_dataset" in roles else held_out_id
    body.update({role: shared for role in roles})

    for route in ("/jobs", "/preflight"):
        response = client.post(route, json=body)
        assert response.status_code == 422, response.text
        assert "name the same dataset" in response.text


def test_a_valid_scratch_architecture_is_accepted_and_normalised(client, train_id) -> None:
    architecture = {"hidden_irreps": "8x0e + 8x1o"}
    response = client.post(
        "/jobs",
        json={
            "train_dataset": train_id,
            "strategy": {**SCRATCH, "architecture": architecture},
            "e0s": EXPLICIT_E0S,
        },
    )

    assert response.status_code == 201, response.text
    assert response.json()["spec"]["strategy"]["architecture"]["hidden_irreps"] == "8x0e+8x1o"
    client.post(f"/jobs/{response.json()['id']}/cancel")
