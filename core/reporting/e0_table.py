"""The E0 table of a job's report (issue 25): per element, the E0 the model carries, how it was
chosen, the foundation's own E0, the data's isolated-atom energy and the delivered model's lone-atom
energy; a column that repeats the E0 column everywhere is left out (dashboard: the same rule in
api/dashboard/js/report.js)."""

from typing import Any

from ase.data import atomic_numbers

from core.reporting.report_models import E0sReport

# (title, key) of every column; "element", "e0" and "method" are always shown.
E0_COLUMNS = (
    ("Element", "element"),
    ("E0 (eV)", "e0"),
    ("Method", "method"),
    ("Foundation's E0 (eV)", "foundation"),
    ("Isolated atom in the data (eV)", "isolated"),
    ("Lone atom, delivered model (eV)", "lone_atom"),
)
# Values closer than this are the same number printed twice.
_SAME_EV = 1e-9


def e0_rows(e0s: E0sReport) -> list[dict[str, Any]]:
    """One row per element the model knows; optional columns are None where unknown, and None
    throughout when they only repeat the E0."""
    kept = e0s.kept_from_foundation or {}
    values = {**kept, **e0s.e0s}
    method = e0s.method or "—"
    optional = {
        "foundation": e0s.foundation_e0s or {},
        "isolated": e0s.isolated_atom_references or {},
        "lone_atom": e0s.isolated_atom_energies or {},
    }
    shown = {
        key: any(
            column.get(symbol) is not None and abs(column[symbol] - value) > _SAME_EV
            for symbol, value in values.items()
        )
        for key, column in optional.items()
    }
    return [
        {
            "element": symbol,
            "e0": values[symbol],
            "method": "foundation's (not in the training data)" if symbol in kept else method,
            **{key: column.get(symbol) if shown[key] else None for key, column in optional.items()},
        }
        for symbol in sorted(values, key=atomic_numbers.__getitem__)
    ]
