"""SUV from PET headers: the QIBA DRO and pysuv's vendor samples (data no one here wrote)."""

import warnings

import numpy as np
import pydicom
import pytest

from dosepaint.io import dicom as dcm
from dosepaint.pet import SuvError, suv_bw_factor, suv_factor_from_metadata, uptake_interval_s


def _suv(path):
    ds = pydicom.dcmread(path)
    factor, record = suv_factor_from_metadata(dcm.pet_metadata(ds))
    pixels = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    return pixels * factor, record


def test_qiba_dro_background_and_hot_voxel(pysuv_data):
    suv, record = _suv(pysuv_data / "qiba_dro" / "female_slice_040")
    # QIBA DRO threshold analysis: background SUV 1.000, hot test voxel 4.110, cold −0.110.
    values, counts = np.unique(np.round(suv, 4), return_counts=True)
    background = values[np.argsort(counts)[-2]]  # the commonest non-air value
    assert background == pytest.approx(1.000, abs=5e-4)
    assert suv.max() == pytest.approx(4.110, abs=1e-3)
    assert suv.min() == pytest.approx(-0.110, abs=1e-3)
    assert record["uptake_interval_s"] == 3600.0  # 13:01 injection, 14:01 series, no StartDateTime
    assert record["injection_time_source"] == "SeriesDate+RadiopharmaceuticalStartTime"


def _vendor_files(pysuv_data):
    files = sorted((pysuv_data / "idc_vendor_samples").glob("*/*.dcm"))
    files += sorted((pysuv_data / "tcia_vendor_samples").glob("*/*.dcm"))
    return files


def test_vendor_samples_agree_with_pysuv(pysuv_data):
    pysuv = pytest.importorskip("pysuv")
    files = _vendor_files(pysuv_data)
    assert len(files) >= 60
    agree, both_refuse, ours_only, we_refuse = [], [], [], []
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ref = pysuv.get_suv_factor(path, philips_timing="3dslicer").suv_factor  # SeriesTime, as ours
            except Exception:  # noqa: BLE001 (pysuv raises several types; any means "not supported")
                ref = None
        try:
            ours, _ = suv_factor_from_metadata(dcm.pet_metadata(pydicom.dcmread(path)))
        except SuvError as exc:
            ours, why = None, exc
        if ref is not None and ours is not None:
            assert ours == pytest.approx(ref, rel=1e-9), path.name
            agree.append(path)
        elif ref is None and ours is None:
            both_refuse.append(path)
        elif ours is not None:
            ours_only.append(path)
        else:
            we_refuse.append((path, why))
    vendors = {p.parent.name for p in agree}
    assert vendors == {"ge", "siemens", "philips"} and len(agree) >= 60
    # Where we differ, it is by design: GML images are already SUV (pysuv refuses the unit) …
    assert all(pydicom.dcmread(p).Units == "GML" for p in ours_only) and len(ours_only) == 2
    # … and Philips CNTS images whose private SUV scale factor is 0 are refused, not made all zero.
    assert len(we_refuse) == 2
    for path, why in we_refuse:
        assert why.attribute == "(7053,1000) SUVScaleFactor"
        assert float(pydicom.dcmread(path)[0x7053, 0x1000].value) == 0
    assert len(both_refuse) >= 15  # non-attenuation-corrected images, missing weight or dose


def test_uptake_interval_rules():
    # Full date-time wins.
    assert uptake_interval_s(
        series_date="2024-03-02", series_time="00:25:00", start_datetime="2024-03-01T23:30:00", start_time="23:30:00"
    ) == (3300.0, "RadiopharmaceuticalStartDateTime")
    # Only times: a scan after midnight is injected the day before.
    s, src = uptake_interval_s(series_date="2024-03-02", series_time="00:25:00", start_time="23:30:00")
    assert s == 3300.0 and "crosses midnight" in src
    # Anonymised dates (unreadable) fall back to times of day.
    s, src = uptake_interval_s(series_date=None, series_time="10:42:54", start_time="09:40:00")
    assert s == pytest.approx(3774.0) and "SeriesDate unusable" in src
    # Dates shifted apart by a whole day: times of day, said so.
    s, src = uptake_interval_s(
        series_date="2024-03-02", series_time="10:00:00", start_datetime="2024-03-01T09:00:00", start_time="09:00:00"
    )
    assert s == 3600.0 and "dates inconsistent" in src
    # Clocks that disagree by under an hour: a small negative interval, as pysuv keeps it.
    s, src = uptake_interval_s(series_date="2024-03-02", series_time="14:05:19", start_time="14:06:00")
    assert s == -41.0 and "clocks disagree" in src
    with pytest.raises(SuvError, match="RadiopharmaceuticalStartTime: missing"):
        uptake_interval_s(series_date="2024-03-02", series_time="10:00:00")


BASE = dict(
    units="BQML",
    decay_correction="START",
    corrected_image=["ATTN", "DECY"],
    weight_kg=70.0,
    dose_bq=3.7e8,
    half_life_s=6586.2,
    uptake_s=3600.0,
)


def test_suv_factor_closed_forms():
    assert suv_bw_factor(**BASE) == pytest.approx(70e3 / (3.7e8 * 2 ** (-3600 / 6586.2)), rel=1e-12)
    assert suv_bw_factor(**{**BASE, "decay_correction": "ADMIN"}) == pytest.approx(70e3 / 3.7e8, rel=1e-12)
    assert suv_bw_factor(**{**BASE, "units": "GML"}) == 1.0
    assert suv_bw_factor(**{**BASE, "units": "CNTS", "philips_suv_scale": 1.6e-4}) == 1.6e-4


@pytest.mark.parametrize(
    "change, attribute",
    [
        ({"weight_kg": None}, "PatientWeight"),
        ({"dose_bq": 0.0}, "RadionuclideTotalDose"),
        ({"half_life_s": None}, "RadionuclideHalfLife"),
        ({"units": "CNTS"}, "(7053,1000) SUVScaleFactor"),
        ({"units": "PROPCPS"}, "Units"),
        ({"decay_correction": "NONE"}, "DecayCorrection"),
        ({"corrected_image": ["DECY", "SCAT"]}, "CorrectedImage"),
    ],
)
def test_missing_or_unsupported_attributes_are_named(change, attribute):
    with pytest.raises(SuvError) as err:
        suv_bw_factor(**{**BASE, **change})
    assert err.value.attribute == attribute and str(err.value).startswith(attribute)
