"""Cell density with its 90 % interval from voxel signals, without the workflow (docs/method.md §3).

Usage::

    python -m dosepaint.dwi_estimate IN.npz OUT.npz [--config FILE]

IN holds ``signal`` (n_voxels × n_b, any units; b = 0 included or not), ``bvalues`` (s/mm²),
``delta_ms`` and ``Delta_ms`` (PGSE timing) and optionally ``noise_sigma`` (the SD of each Gaussian
channel of the magnitude, same units as ``signal``: a scalar, one per b-value, or n_voxels × n_b).
Without it σ is estimated per b-value from the residuals of the mono-exponential fit (at least 50
fitted voxels).  OUT holds ``cell_density``, ``cell_density_lo``, ``cell_density_hi`` (cells/mm³, the
equal-tailed interval at ``credible_level``, 0.9 by default), ``cell_density_mean``,
``sd_log_cell_density``, ``adc`` (mm²/s, fitted to the noise-floor-corrected signal) and ``flags``
(bit field: 1 non-positive signal, 2 too few b-values, 4 ADC out of range, 32 fewer than ``min_ess``
effective prior samples).  FILE is a YAML file with the keys of the workflow configuration's ``dwi:``
section (``prior``, ``prior_update``, ``b_min``, ``point_estimate``, ``credible_level``, ``min_ess``,
``adc_max``), either at its top level or under ``dwi:``; other keys are refused.  With ``prior_update:
patient`` (the default, as in the workflow) IN's voxels are one population whose distribution reweights
the prior (empirical Bayes); ``none`` treats each voxel alone under the broad prior.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from . import dwi_posterior as dp
from .dwi import fit_adc
from .dwi_noise import residual_sigma

DEFAULTS: dict[str, Any] = {
    "b_min": 100.0, "prior_update": "patient", "point_estimate": "median", "credible_level": 0.9, "min_ess": 20,
    "adc_max": 3.5e-3,
    "prior": {**dp.DEFAULT_PRIOR, "n_samples": 4096, "seed": 0},
}  # fmt: skip


class InputError(ValueError):
    """A malformed IN file or configuration (the message names the file and the key)."""


def read_config(path) -> dict:
    """The estimator's settings: :data:`DEFAULTS` updated from a YAML file (``dwi:`` section or top level)."""
    import yaml

    cfg = {**DEFAULTS, "prior": dict(DEFAULTS["prior"])}
    if path is None:
        return cfg
    with open(path) as fh:
        user = yaml.safe_load(fh) or {}
    user = user.get("dwi", user) if isinstance(user, dict) else None
    if not isinstance(user, dict):
        raise InputError(f"{path}: expected a mapping of dwi settings")
    unknown = sorted(set(user) - set(DEFAULTS) - {"method", "noise", "partial_volume_threshold", "adc_weighting"})
    if unknown:
        raise InputError(f"{path}: unknown dwi keys {unknown} (known: {sorted(DEFAULTS)})")
    prior = user.pop("prior", {}) or {}
    bad = sorted(set(prior) - set(DEFAULTS["prior"]))
    if bad:
        raise InputError(f"{path}: unknown prior keys {bad} (known: {sorted(DEFAULTS['prior'])})")
    cfg.update({k: v for k, v in user.items() if k in DEFAULTS})
    cfg["prior"].update(prior)
    return cfg


def read_input(path) -> dict:
    """IN's arrays, checked: shapes, finite timing, b-values matching the signal's columns."""
    try:
        with np.load(path) as d:
            data = {k: np.asarray(d[k]) for k in d.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from exc
    missing = [k for k in ("signal", "bvalues", "delta_ms", "Delta_ms") if k not in data]
    if missing:
        raise InputError(f"{path}: missing {missing} (needs signal, bvalues, delta_ms, Delta_ms)")
    sig, b = np.atleast_2d(data["signal"].astype(float)), data["bvalues"].astype(float).ravel()
    if sig.ndim != 2 or sig.shape[1] != b.size:
        raise InputError(f"{path}: signal has shape {data['signal'].shape}, expected (n_voxels, {b.size}) "
                         "for the b-values given")  # fmt: skip
    delta, Delta = float(data["delta_ms"]), float(data["Delta_ms"])
    if not 0 < delta < Delta:
        raise InputError(f"{path}: need 0 < delta_ms < Delta_ms, got {delta}, {Delta}")
    out = {"signal": sig, "bvalues": b, "delta_ms": delta, "Delta_ms": Delta}
    if "noise_sigma" in data:
        try:
            out["noise_sigma"] = np.broadcast_to(data["noise_sigma"].astype(float), sig.shape)
        except ValueError as exc:
            raise InputError(f"{path}: noise_sigma of shape {data['noise_sigma'].shape} does not fit "
                             f"signal {sig.shape} (a scalar, ({b.size},) or {sig.shape})") from exc  # fmt: skip
    return out


def estimate(data: dict, cfg: dict) -> dict:
    """OUT's arrays from IN's (:func:`read_input`) under the settings ``cfg`` (:func:`read_config`)."""
    sig, b = data["signal"], data["bvalues"]
    fit = fit_adc(sig.T, b, b_min=cfg["b_min"], adc_max=cfg["adc_max"])
    sigma = data.get("noise_sigma")
    if sigma is None:
        sigma = residual_sigma(sig.T, b, adc=fit.adc, s0=fit.s0, b_min=cfg["b_min"])
        if sigma is None:
            raise InputError("no noise_sigma given and fewer than 50 fitted voxels to estimate it from")
        sigma = np.broadcast_to(sigma, sig.shape)
    prior = {k: v for k, v in cfg["prior"].items() if k not in ("n_samples", "seed")}
    timing = {"delta": data["delta_ms"] / 1e3, "Delta": data["Delta_ms"] / 1e3}
    lib = dp.build_prior_library(b, **timing, b_min=cfg["b_min"], prior=prior, n_samples=cfg["prior"]["n_samples"],
                                 seed=cfg["prior"]["seed"])  # fmt: skip
    fitted = np.where(fit.valid[:, None], sig, np.nan)
    weights = None
    if cfg["prior_update"] == "patient":  # IN's voxels as one population, as the workflow treats a patient's
        weights = dp.empirical_prior(fitted, sigma=sigma, library=lib, rng=np.random.default_rng(0))
    elif cfg["prior_update"] != "none":
        raise InputError(f"prior_update must be 'patient' or 'none', not {cfg['prior_update']!r}")
    post = dp.posterior(fitted, sigma=sigma, library=lib, level=cfg["credible_level"], prior_weights=weights)
    corrected = np.sqrt(np.maximum(sig**2 - 2 * sigma**2, (0.1 * sigma) ** 2))  # E[m²] = ν² + 2σ² (Rician)
    adc = fit_adc(corrected.T, b, b_min=cfg["b_min"], adc_max=cfg["adc_max"], weighting="none").adc
    flags = fit.flags | np.where(post.ess < cfg["min_ess"], dp.FLAG_LOW_ESS, 0).astype(np.uint8)
    point = post.cell_density_median if cfg["point_estimate"] == "median" else post.cell_density
    return {"cell_density": point, "cell_density_lo": post.cell_density_lo, "cell_density_hi": post.cell_density_hi,
            "cell_density_mean": post.cell_density, "sd_log_cell_density": post.sd_log_cell_density, "adc": adc,
            "flags": flags.astype(np.uint8)}  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dosepaint.dwi_estimate", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="IN.npz: signal, bvalues, delta_ms, Delta_ms[, noise_sigma]")
    ap.add_argument("output", help="OUT.npz")
    ap.add_argument("--config", help="YAML with dwi settings (prior, b_min, credible_level, ...)")
    args = ap.parse_args(argv)
    try:
        out = estimate(read_input(args.input), read_config(args.config))
    except InputError as exc:
        print(f"dwi_estimate: {exc}", file=sys.stderr)
        return 2
    np.savez(args.output, **out)
    n = out["cell_density"].size
    print(f"{n} voxels, {int(np.sum(out['flags'] != 0))} flagged; written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
