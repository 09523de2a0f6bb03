"""Issue 25: the E0 table shows what differs, never two identical columns."""

from core.reporting.e0_table import e0_rows
from core.reporting.report_models import E0sReport


def test_estimated_e0s_show_the_foundations_beside_them_and_hide_a_repeated_lone_atom() -> None:
    report = E0sReport(
        method="estimated",
        e0s={"Cu": -6.1},
        kept_from_foundation={"H": -1.2},
        foundation_e0s={"H": -1.2, "Cu": -3.2},
        # The demo foundation adds nothing to a lone atom: this column repeats the E0s.
        isolated_atom_energies={"H": -1.2, "Cu": -6.1},
    )

    rows = e0_rows(report)

    assert [row["element"] for row in rows] == ["H", "Cu"]
    assert rows[1] == {
        "element": "Cu",
        "e0": -6.1,
        "method": "estimated",
        "foundation": -3.2,
        "isolated": None,
        "lone_atom": None,
    }
    assert rows[0]["method"] == "foundation's (not in the training data)"


def test_isolated_atom_e0s_do_not_repeat_the_isolated_atoms_as_a_column() -> None:
    report = E0sReport(
        method="isolated_atoms",
        e0s={"Cu": -1.0, "Au": -2.0},
        isolated_atom_references={"Cu": -1.0, "Au": -2.0},
        isolated_atom_energies={"Cu": -1.0, "Au": -2.0},
    )

    assert all(row["isolated"] is None and row["lone_atom"] is None for row in e0_rows(report))
