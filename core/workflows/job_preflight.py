"""core.science.preflight run on a job's files, and the warnings its findings leave on the job."""

import ase
import torch

from core.data.datasets import read_configurations
from core.data.label_values import is_isolated_atom
from core.registry.foundations import FoundationModel
from core.science.cache import PredictionCache
from core.science.cost import replay_count
from core.science.preflight import PreflightOutcome, run_preflight
from core.science.spec import JobSpec, replay_of
from core.workflows.training_records import JobFiles


def preflight_job(
    spec: JobSpec,
    configs: list[ase.Atoms],
    files: JobFiles,
    foundation: FoundationModel | None,
    foundation_model: torch.nn.Module | None,
    cache: PredictionCache | None,
    device: str,
) -> PreflightOutcome:
    """core.science.preflight on a job's files: the findings, and the foundation's energies that E0
    estimation reuses."""
    replay = replay_of(spec.strategy)
    n_replay = 0
    if replay is not None and files.replay is not None:
        n_replay = replay_count(spec, len(read_configurations(files.replay)))
    isolated = read_configurations(files.isolated_atoms) if files.isolated_atoms is not None else []
    return run_preflight(
        spec,
        configs,
        foundation_model,
        isolated_atoms=[atoms for atoms in isolated if is_isolated_atom(atoms)],
        foundation_sha256=foundation.sha256 if foundation else None,
        cache=cache,
        device=device,
        n_replay=n_replay,
    )


def preflight_warnings(outcome: PreflightOutcome) -> list[str]:
    return [
        f"preflight [{finding.code}]: {finding.message}"
        for finding in outcome.report.findings
        if finding.severity == "warning"
    ]
