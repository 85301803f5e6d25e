"""Errors that carry the patient, the file and the problem."""

from __future__ import annotations


class DosepaintInputError(ValueError):
    """Bad input: names the patient, the file and what is wrong.

    Parameters
    ----------
    problem : str
        What is wrong, in words a user can act on.
    patient : str, optional
        Pseudonymous patient id (from the patient sheet, never from DICOM).
    path : str or os.PathLike, optional
        The offending file or folder.
    """

    def __init__(self, problem: str, *, patient: str | None = None, path=None):
        self.problem = problem
        self.patient = patient
        self.path = None if path is None else str(path)
        parts = []
        if patient:
            parts.append(f"patient {patient}")
        if self.path:
            parts.append(f"file {self.path}")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {problem}" if prefix else problem)


class ConfigError(ValueError):
    """Invalid workflow configuration or patient sheet."""
