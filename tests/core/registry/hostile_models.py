"""Model files a hostile (or careless) upload could hold, for the registration tests."""

from pathlib import Path

import numpy.testing._private.utils as numpy_testing_utils
import torch


class RunsCode:
    """Unpickling calls numpy's `runstring`, which is `exec`: it writes `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        code = f"open({str(self.marker)!r}, 'w').write('ran')"
        return (numpy_testing_utils.runstring, (code, {}))


def exec_pickle(path: Path, marker: Path) -> Path:
    torch.save(RunsCode(marker), path)
    return path


def mace_carrying_exec(path: Path, demo_foundation: Path, marker: Path) -> Path:
    """A real, working MACE model with the payload as one more attribute."""
    model = torch.load(demo_foundation, map_location="cpu", weights_only=False)
    model.provenance = RunsCode(marker)
    torch.save(model, path)
    return path


def plain_mace(path: Path) -> Path:
    """A MACE (not a ScaleShiftMACE): mace-torch cannot fine-tune from it."""
    import numpy as np
    from e3nn import o3
    from mace import modules

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = modules.MACE(
            r_max=4.0,
            num_bessel=4,
            num_polynomial_cutoff=5,
            max_ell=1,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
            num_interactions=1,
            num_elements=2,
            hidden_irreps=o3.Irreps("8x0e"),
            MLP_irreps=o3.Irreps("4x0e"),
            atomic_energies=np.array([-1.0, -2.0]),
            avg_num_neighbors=8.0,
            atomic_numbers=[29, 79],
            correlation=2,
            gate=torch.nn.functional.silu,
        )
    finally:
        torch.set_default_dtype(previous)
    torch.save(model, path)
    return path
