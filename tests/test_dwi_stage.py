"""The DWI stage on the tiny synthetic patient, against its ground truth."""

import numpy as np
import pandas as pd
import pytest

from dosepaint import cohort, layout
from dosepaint.dwi import protocol_key
from dosepaint.errors import DosepaintInputError
from dosepaint.io import files
from dosepaint.stages import dwi as dwi_stage
from dosepaint.validation import dwi_errors


@pytest.fixture(scope="session")
def dwi_done(ingested, config_schema, tmp_path_factory):
    cfg = cohort.validate_config({"cohort": {"source": "synthetic"}}, config_schema)["dwi"]
    meta = files.read_json(ingested["out"] / "dwi.json")
    key = protocol_key(meta["bvalues_s_per_mm2"], delta_ms=meta["pgse_delta_ms"], Delta_ms=meta["pgse_Delta_ms"])
    base = tmp_path_factory.mktemp("dwi")
    lib = base / f"dwi_{key}.npz"
    library_params = {"grid": cfg["library"], **{k: cfg[k] for k in ("b_min", "adc_weighting", "method", "prior")}}
    dwi_stage.run_library({}, {"library": str(lib)}, params={"protocol": key, **library_params})
    ing = ingested["out"]
    inputs = {
        "dwi": ing / "dwi.nii.gz",
        "dwi_json": ing / "dwi.json",
        "t2w_to_ct": ing / "t2w_to_ct.tfm",
        "dwi_to_t2w": ing / "dwi_to_t2w.tfm",
        "ct_dose": ing / "ct_dose.nii.gz",
        "masks_dose": ing / "masks_dose",
        "library": lib,
    }
    out = {k: str(base / v) for k, v in layout.DWI_OUTPUTS.items()}
    params = {"patient_id": "SYN001", **{k: v for k, v in cfg.items() if k not in ("library", "prior")}}
    qc = dwi_stage.run(inputs, out, params=params)
    return {**ingested, "base": base, "qc": qc, "inputs": inputs, "params": params, "library_params": library_params}


def test_a_library_fitted_another_way_is_refused(dwi_done, tmp_path):
    out = {k: str(tmp_path / v) for k, v in layout.DWI_OUTPUTS.items()}
    with pytest.raises(DosepaintInputError, match=r"SYN001.*weighting none\) differs.*weighting signal"):
        dwi_stage.run(dwi_done["inputs"], out, params={**dwi_done["params"], "adc_weighting": "signal"})
    assert not any((tmp_path / v).exists() for v in layout.DWI_OUTPUTS.values())


def test_a_library_of_another_protocol_is_refused(dwi_done, tmp_path):
    """The library is named by the input check's protocol record, the stage reads the ingest's: a library
    of other b-values or another PGSE timing than the DWI's is a clear error naming it."""
    out = {k: str(tmp_path / v) for k, v in layout.DWI_OUTPUTS.items()}
    for key, message in (
        (
            "b0-50-100-400-700-1000_d25_D40",
            r"SYN001.*dwi_b0.*_d25_D40\.npz.*timing \(δ 25 ms, Δ 40 ms\) differs "
            r"from the DWI's \(δ 20 ms, Δ 40 ms\)",
        ),
        ("b0-50-100-400-1000_d20_D40", r"SYN001.*library b-values \[.*\] differ from the DWI's"),
    ):
        lib = tmp_path / f"dwi_{key}.npz"
        dwi_stage.run_library({}, {"library": str(lib)}, params={"protocol": key, **dwi_done["library_params"]})
        with pytest.raises(DosepaintInputError, match=message):
            dwi_stage.run({**dwi_done["inputs"], "library": lib}, out, params=dwi_done["params"])
    assert not any((tmp_path / v).exists() for v in layout.DWI_OUTPUTS.values())


def test_the_library_key_of_an_input_check_record():
    from dosepaint.layout import check_library_key

    protocol = {"bvalues_s_per_mm2": [0.0, 62.5, 1000.0], "pgse_delta_ms": 20.0, "pgse_Delta_ms": 40.5}
    assert (
        check_library_key({"status": "included", "dwi_protocol": protocol}, path="c.json") == "b0-62p5-1000_d20_D40p5"
    )
    assert check_library_key({"status": "included", "dwi_protocol": None}, path="c.json") is None  # no DWI
    assert check_library_key({"status": "excluded", "dwi_protocol": None}, path="c.json") is None
    with pytest.raises(ValueError, match=r"SYN007/input_check.json was written before .* --forcerun check_inputs"):
        check_library_key({"status": "included", "registration": {}}, path="SYN007/input_check.json")


def test_protocol_key_round_trip():
    from dosepaint.dwi import parse_protocol_key

    key = protocol_key([0, 100, 1000, 62.5], delta_ms=20, Delta_ms=40.5)
    assert key == "b0-62p5-100-1000_d20_D40p5"
    b, d, D = parse_protocol_key(key)
    assert b.tolist() == [0, 62.5, 100, 1000] and (d, D) == (20.0, 40.5)


def test_outputs_exist_and_flags_are_rare_in_tumour(dwi_done):
    for name in layout.DWI_OUTPUTS.values():
        assert (dwi_done["base"] / name).exists(), name
    qc = dwi_done["qc"].iloc[0]
    assert qc["flagged_fraction_gtv"] < 0.02
    # Chordoma ADC (two-compartment truth, mostly low cellularity): ~1.0–1.5e-3 mm²/s.
    assert 1.0e-3 < qc["median_adc_gtv"] < 1.5e-3


def test_cell_density_and_tcp_against_truth(dwi_done):
    """Ranking and totals against the generator's truth. The DWI bounds ρ's scale only loosely (the
    small-cell end of the broad prior stays possible), so the total is checked against the interval's
    ends summed over the GTV, and its error against what the foreign-cohort benchmark measured (median
    18 %, worst 30 % over ten patients)."""
    import SimpleITK as sitk

    from dosepaint.geometry import resample

    err = dwi_errors(dwi_done["out"], dwi_done["base"], dwi_done["truth_dir"])
    assert err["spearman_rho_gtv"] > 0.5
    assert abs(err["clonogens_error_pct"]) < 30
    assert abs(err["tcp_diff_pp"]) < 5
    gtv = files.read_array(dwi_done["out"] / "masks_dose" / "GTV.nii.gz")[0] > 0
    lo, grid = files.read_array(dwi_done["base"] / "cell_density_lo_dose.nii.gz")
    hi, _ = files.read_array(dwi_done["base"] / "cell_density_hi_dose.nii.gz")
    true = sitk.GetArrayFromImage(resample(files.read_image(dwi_done["truth_dir"] / "cell_density.nii.gz"), grid))
    assert np.nansum(lo[gtv]) < true[gtv].sum() < np.nansum(hi[gtv])


def test_native_maps_are_physical(dwi_done):
    from dosepaint.dwi import FLAG_ADC_RANGE, FLAG_NONPOSITIVE, FLAG_TOO_FEW_B

    adc, _ = files.read_array(dwi_done["base"] / "adc.nii.gz")
    rho, _ = files.read_array(dwi_done["base"] / "cell_density.nii.gz")
    flags, _ = files.read_array(dwi_done["base"] / "flags.nii.gz")
    fit_failed = (flags & np.uint8(FLAG_NONPOSITIVE | FLAG_TOO_FEW_B | FLAG_ADC_RANGE)) != 0
    assert fit_failed.any() and np.all(np.isnan(adc[fit_failed]))  # flagged, not filled
    assert np.all(np.isnan(rho[fit_failed]))  # partial-volume voxels (16) keep their estimate, left out of the GTV
    est = np.isfinite(rho)  # the posterior is computed in and around the GTV only
    assert est.sum() > 100 and np.all((flags[est] & ~np.uint8(16)) == 0)
    assert np.nanmin(adc) >= 0 and np.nanmax(adc) <= 3.5e-3
    r, _ = files.read_array(dwi_done["base"] / "cell_radius.nii.gz")
    assert np.nanmin(r) >= 3e-3 - 1e-9 and np.nanmax(r) <= 15e-3 + 1e-9  # within the default prior's range
    assert isinstance(dwi_done["qc"], pd.DataFrame)


def test_a_dwi_that_misses_the_tumour_fails_the_stage(dwi_done, tmp_path):
    """The DWI field of view cut above the GTV (its lower slices zeroed, as a slab that misses the
    tumour): the stage refuses to count clonogens on what is left, naming the share and the key."""
    signals, grid = files.read_array(dwi_done["inputs"]["dwi"])
    gtv, dgrid = files.read_array(dwi_done["inputs"]["masks_dose"] / "GTV.nii.gz")
    cut = signals.copy()
    cut[:, : signals.shape[1] * 3 // 4] = 0.0  # no signal: every such voxel is flagged
    files.write_array(cut, grid, tmp_path / "dwi.nii.gz")
    out = {k: str(tmp_path / "out" / v) for k, v in layout.DWI_OUTPUTS.items()}
    with pytest.raises(
        DosepaintInputError,
        match=r"patient SYN001.*\d+ % of the GTV has no cell density.*"
        r"dwi.max_flagged_fraction_gtv",
    ):
        dwi_stage.run(
            {**dwi_done["inputs"], "dwi": tmp_path / "dwi.nii.gz"},
            out,
            params={**dwi_done["params"], "max_flagged_fraction_gtv": 0.5},
        )


def test_posterior_interval_covers_the_true_density(dwi_done):
    """The 90 % credible interval (dose grid) against the generator's truth in the GTV."""
    import SimpleITK as sitk

    from dosepaint.geometry import resample

    lo, grid = files.read_array(dwi_done["base"] / "cell_density_lo_dose.nii.gz")
    hi, _ = files.read_array(dwi_done["base"] / "cell_density_hi_dose.nii.gz")
    true = sitk.GetArrayFromImage(resample(files.read_image(dwi_done["truth_dir"] / "cell_density.nii.gz"), grid))
    gtv = files.read_array(dwi_done["out"] / "masks_dose" / "GTV.nii.gz")[0] > 0
    ok = gtv & (true > 0) & np.isfinite(lo)
    cover = np.mean((true[ok] >= lo[ok]) & (true[ok] <= hi[ok]))
    print("coverage", cover, "voxels", ok.sum())
    assert ok.sum() > 50 and cover >= 0.85
    qc = dwi_done["qc"].iloc[0]
    # σ measured in the air around the body of each b-value's volume: the generator's Rician σ
    sigma = files.read_json(dwi_done["truth_dir"] / "truth.json")["dwi_noise_sigma"]
    assert qc["noise_source"] == "background"
    assert qc["noise_sigma_b_lowest"] == pytest.approx(sigma, rel=0.05)
    assert qc["noise_sigma_b_highest"] == pytest.approx(sigma, rel=0.05)


def test_the_study_lookup_writes_no_interval(dwi_done, tmp_path, config_schema):
    """dwi.method adc: the dose-grid interval maps are NaN (not zeros), so robustness adds no
    posterior rows; the cell density is the lookup's."""
    cfg = cohort.validate_config({"cohort": {"source": "synthetic"}}, config_schema)["dwi"]
    lib = tmp_path / "grid.npz"
    key = dwi_done["inputs"]["library"].stem[len("dwi_") :]
    lib_params = {"protocol": key, "grid": cfg["library"], "method": "adc", "b_min": cfg["b_min"],
                  "adc_weighting": cfg["adc_weighting"]}  # fmt: skip
    dwi_stage.run_library({}, {"library": str(lib)}, params=lib_params)
    out = {k: str(tmp_path / v) for k, v in layout.DWI_OUTPUTS.items()}
    dwi_stage.run({**dwi_done["inputs"], "library": lib}, out, params={**dwi_done["params"], "method": "adc"})
    lo = files.read_array(out["cell_density_lo_dose"])[0]
    rho = files.read_array(out["cell_density_dose"])[0]
    assert np.all(np.isnan(lo)) and np.isfinite(rho).sum() > 100
