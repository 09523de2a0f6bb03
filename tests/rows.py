"""Rows the tests write straight into the database, shaped like the ones the service writes."""

from typing import Any

from core.data.dataset_summary import DatasetSummary


def dataset_summary(elements: tuple[str, ...] = ("H",), n_configs: int = 1) -> dict[str, Any]:
    """The stored summary of an upload of `n_configs` one-atom configurations with energies: the
    API types every field of it, so a row made by hand carries them all."""
    return DatasetSummary(
        n_configs=n_configs,
        n_atoms=n_configs,
        elements=list(elements),
        element_counts={element: n_configs for element in elements},
        labels=["energy"],
        energy_key="energy",
        forces_key=None,
        stress_key=None,
        config_types={},
        n_periodic=0,
        isolated_atom_elements=[],
        sha256="0" * 64,
        size_bytes=0,
        structure_elements=list(elements),
    ).to_dict()
