"""Cohort definition: configuration, the patient sheet and the train/test split.

Everything the Snakefile needs to know before any job starts lives here, so
that pytest reaches it (``workflow/rules/common.smk`` is a thin adapter).
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import yaml

from .errors import ConfigError, DosepaintInputError

CORE_COLUMNS = ("patient_id", "dicom_dir", "event", "time_months", "split")


def load_yaml(path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def _with_defaults(validator_class):
    """Extend a jsonschema validator so that it fills in ``default`` values.

    jsonschema deliberately does not do this; this is the recipe from its FAQ.
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultingValidator = _with_defaults(jsonschema.Draft202012Validator)


def _format_error(err: jsonschema.ValidationError, what: str) -> str:
    loc = "/".join(str(p) for p in err.absolute_path) or "(top level)"
    return f"{what}: at '{loc}': {err.message}"


def validate_config(config: dict, schema: dict) -> dict:
    """Validate ``config`` against ``schema`` and return a copy with defaults filled in.

    Raises
    ------
    ConfigError
        One message naming the offending key and the problem.
    """
    cfg = copy.deepcopy(dict(config))
    validator = _DefaultingValidator(schema)
    # Fill defaults (validation of a partly-defaulted instance), then report the
    # first error in document order so the user sees one clear message.
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError(_format_error(errors[0], "invalid configuration"))
    # A second pass fills defaults of sub-objects that were created by the first.
    errors = list(validator.iter_errors(cfg))
    if errors:
        raise ConfigError(_format_error(errors[0], "invalid configuration"))
    if cfg["cohort"]["source"] == "sheet" and not cfg["cohort"].get("sheet"):
        raise ConfigError("invalid configuration: at 'cohort': source 'sheet' needs cohort.sheet")
    missing = {"RTDOSE", "DWI"} - set(cfg["ingest"]["required_modalities"])
    if cfg["planning"]["tcp"]["source"] == "fit" and missing:
        raise ConfigError(
            "invalid configuration: at 'planning.tcp.source': 'fit' needs the delivered dose and "
            f"the DWI of the training patients; add {sorted(missing)} to "
            "ingest.required_modalities, or set planning.tcp.source: config"
        )
    return cfg


def _coerce_row(row: dict) -> dict:
    out: dict = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
            if key == "split":
                out[key] = None
            continue  # missing: the schema reports required columns
        if key == "event":
            try:
                value = int(value) if str(value).strip() in {"0", "1"} else value
            except ValueError:
                pass
        elif key == "time_months":
            try:
                value = float(value)
            except ValueError:
                pass
        elif key == "split":
            value = str(value).strip().lower()
        out[key] = value
    return out


def read_sheet(path, *, schema: dict, clinical_columns=(), dicom_root=None) -> pd.DataFrame:
    """Read and validate the patient sheet.

    Parameters
    ----------
    path : path-like
        Tab-separated sheet; ``dicom_dir`` is relative to its folder.
    schema : dict
        Row schema (``workflow/schemas/patients.schema.yaml``).
    clinical_columns : sequence of str
        Extra columns declared in the config; any other column is an error.
    dicom_root : path-like, optional
        Every ``dicom_dir`` must resolve inside it (default: the sheet's folder).

    Returns
    -------
    DataFrame
        One row per patient with an extra absolute ``dicom_path`` column.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"patient sheet {path}: file not found")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    unknown = [c for c in df.columns if c not in CORE_COLUMNS and c not in clinical_columns]
    if unknown:
        raise ConfigError(
            f"patient sheet {path}: unknown column(s) {unknown}; declare clinical columns in "
            "config cohort.clinical_columns"
        )
    row_schema = copy.deepcopy(schema)
    for col in clinical_columns:
        row_schema["properties"][col] = {"type": ["string", "number", "null"]}
    validator = jsonschema.Draft202012Validator(row_schema)
    root = Path(dicom_root).resolve() if dicom_root else path.parent.resolve()
    rows, seen = [], {}  # type: list, dict
    for line_no, raw in enumerate(df.to_dict(orient="records"), start=2):
        row = _coerce_row(raw)
        errors = sorted(validator.iter_errors(row), key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            pid = raw.get("patient_id", "?")
            raise ConfigError(_format_error(errors[0], f"patient sheet {path}, line {line_no} (patient {pid})"))
        pid = row["patient_id"]
        if pid in seen:
            raise ConfigError(f"patient sheet {path}: duplicate patient_id {pid!r} (lines {seen[pid]} and {line_no})")
        seen[pid] = line_no
        target = (path.parent / row["dicom_dir"]).resolve()
        if not target.is_relative_to(root):
            raise ConfigError(
                f"patient sheet {path}, line {line_no} (patient {pid}): dicom_dir "
                f"{row['dicom_dir']!r} resolves outside the cohort root {root}"
            )
        if not target.is_dir():
            raise ConfigError(
                f"patient sheet {path}, line {line_no} (patient {pid}): dicom_dir "
                f"{row['dicom_dir']!r} is not a folder ({target})"
            )
        row["dicom_path"] = str(target)
        rows.append(row)
    if not rows:
        raise ConfigError(f"patient sheet {path}: no patients")
    out = pd.DataFrame(rows)
    if "split" not in out:
        out["split"] = None
    splits = out["split"]
    if splits.notna().any() and splits.isna().any():
        missing = out.loc[splits.isna(), "patient_id"].tolist()
        raise ConfigError(
            f"patient sheet {path}: split given for some patients but not for {missing}; "
            "fill it for all or leave it empty for all"
        )
    return out


def make_split(patient_ids, events, *, n_test: int, seed: int) -> dict[str, str]:
    """Seeded, outcome-stratified train/test split.

    The held-out share of each outcome stratum is proportional to its size
    (largest-remainder rounding), so 37 patients with ``n_test = 10``
    reproduce the study's 27/10 split.

    Parameters
    ----------
    patient_ids : sequence of str
    events : sequence of int
        1 = local relapse, 0 = control/censored.
    n_test : int
        Held-out patients in total.
    seed : int
        Seed of the ``numpy.random.Generator``.

    Returns
    -------
    dict
        patient_id -> ``"train"`` or ``"test"``.
    """
    ids = list(patient_ids)
    ev = np.asarray(events, int)
    if not 0 < n_test < len(ids):
        raise ConfigError(f"n_test = {n_test} must be between 1 and {len(ids) - 1} for a cohort of {len(ids)}")
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(ev == v) for v in (0, 1)]
    quotas = np.array([n_test * len(s) / len(ids) for s in strata])
    take = np.floor(quotas).astype(int)
    for i in np.argsort(-(quotas - take))[: n_test - take.sum()]:
        take[i] += 1
    split = {pid: "train" for pid in ids}
    for members, k in zip(strata, take):
        for idx in rng.permutation(members)[:k]:
            split[ids[idx]] = "test"
    return split


STUDY_TEST_FRACTION = 10 / 37
"""Held-out share of the study's split (10 of 37 patients)."""


def default_n_test(n_patients: int) -> int:
    """Held-out patients for ``n_patients`` included ones: the study's share, at least 1, leaving at
    least 2 training patients where the cohort allows (37 → 10, 6 → 2, 3 → 1).
    """
    n = int(np.floor(STUDY_TEST_FRACTION * n_patients + 0.5))
    return max(1, min(n, n_patients - 2))


def synthetic_patient_ids(*, prefix: str, n_patients: int) -> list[str]:
    """Pseudonymous ids of the synthetic cohort: ``SYN001``, ``SYN002``, …"""
    return [f"{prefix}{i:03d}" for i in range(1, n_patients + 1)]


def synthetic_truth(synthetic: dict) -> dict:
    """The generator's seed and true radiobiology from the validated config's ``synthetic`` section, as
    keywords of :func:`dosepaint.synthetic.generate.generate_patient` (``seed``, ``alpha``,
    ``alpha_beta``, ``clonogenic_fraction``).
    """
    return {
        "seed": synthetic["seed"],
        "alpha": synthetic["truth_alpha"],
        "alpha_beta": synthetic["truth_alpha_beta"],
        "clonogenic_fraction": synthetic["truth_clonogenic_fraction"],
    }


def exclusion_notice(path) -> str | None:
    """What a run says at its end about the patients left out (``excluded.tsv``, ``planning_failures.tsv``).

    Returns None when the table does not exist (yet) or lists nobody.
    """
    path = Path(path)
    if not path.exists():
        return None
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if table.empty:
        return None
    lines = [
        f"dosepaint: {len(table)} patient(s) left out of every cohort result that needs them "
        f"(listed in {path} and the report):"
    ]
    lines += [f"  {r.patient_id} ({r.stage}): {r.file or '-'}: {r.problem}" for r in table.itertuples()]
    return "\n".join(lines)


SWEEP_COLUMNS = ("de_mean_fraction", "alpha_beta", "sigma_scale")
"""The columns of a sweep table (``sweep.table``), in this order."""


def read_sweep_points(path) -> pd.DataFrame:
    """The sweep table: exactly the columns of :data:`SWEEP_COLUMNS`, positive numbers, no duplicates."""
    t = pd.read_csv(path, sep="\t")
    if tuple(t.columns) != SWEEP_COLUMNS:
        raise DosepaintInputError(
            f"sweep table columns must be {', '.join(SWEEP_COLUMNS)} (in that order), "
            f"not {', '.join(map(str, t.columns))}",
            path=path,
        )
    t = t.astype(float)
    if not np.all(np.isfinite(t.to_numpy())) or (t.to_numpy() <= 0).any():
        raise DosepaintInputError("every sweep value must be a positive number", path=path)
    if t.duplicated().any():
        raise DosepaintInputError("the sweep table repeats a point", path=path)
    return t
