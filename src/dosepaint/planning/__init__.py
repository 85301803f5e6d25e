"""Treatment planning on particle dose-influence matrices (docs/method.md §1–2).

* :mod:`.influence` — the :class:`DoseInfluence` container (sparse matrices on a voxel subset of
  the dose grid) and its cache file.
* :mod:`.engine` — the :class:`DoseEngine` interface and :class:`PyRadPlanEngine` (pyRadPlan,
  matRad's Python port: carbon ions with LEM base data, protons).
* :mod:`.biology` — RBE-weighted dose from α-dose/√β-dose, and LETd approximations.
* :mod:`.optimise` — our own gradient optimiser (L-BFGS-B, augmented Lagrangian) for the uniform,
  DE and DR plans.
* :mod:`.evaluate` — DVH metrics, clinical goals, TCP.
"""
