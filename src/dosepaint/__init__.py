"""dosepaint: biologically guided dose-painting cohort studies from raw DICOM.

Array convention used throughout the package: 3-D arrays are indexed
``(z, y, x)`` = ``(slice, row, column)``, as returned by
``SimpleITK.GetArrayFromImage``.  Physical coordinates are DICOM patient
coordinates (LPS, mm).
"""

__version__ = "0.1.0"
