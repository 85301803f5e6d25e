"""List public science functions whose docstring lacks a numpydoc Parameters (or Returns) section.

python tools/docstrings.py            # report
python tools/docstrings.py --check    # exit 1 if any (the lint lane)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dosepaint"
#: The science layer (arrays in, arrays out); stages, I/O and workflow helpers are documented otherwise.
SCIENCE = [
    "microstructure.py", "dwi.py", "radiobiology.py", "tcp_fit.py", "pet.py", "pet_segmentation.py",
    "prescription.py", "robustness.py", "statistics.py", "survival.py", "structures.py", "registration.py",
    "registration_qc.py", "geometry.py", "planning/biology.py", "planning/evaluate.py", "planning/optimise.py",
    "planning/plans.py", "planning/influence.py",
]  # fmt: skip


def missing(path: Path):
    """Yield (line, name, what is missing) for each public top-level function of ``path``."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            doc = ast.get_docstring(node) or ""
            args = [a for a in node.args.args + node.args.kwonlyargs if a.arg not in ("self", "cls")]
            lacks = []
            if args and "Parameters\n    ----------" not in doc and "Parameters\n----------" not in doc:
                lacks.append("Parameters")
            if "Returns\n-------" not in doc and "Yields\n------" not in doc and "Returns\n    -------" not in doc:
                lacks.append("Returns")
            if lacks:
                yield node.lineno, node.name, lacks


def main(argv) -> int:
    found = [(f"{rel}:{line}", name, lacks) for rel in SCIENCE for line, name, lacks in missing(SRC / rel)]
    for where, name, lacks in found:
        print(f"{where} {name}: no {' / '.join(lacks)}")
    total = sum(1 for rel in SCIENCE for n in ast.parse((SRC / rel).read_text()).body
                if isinstance(n, ast.FunctionDef) and not n.name.startswith("_"))  # fmt: skip
    print(f"{len(found)} of {total} public science functions lack a numpydoc section")
    return 1 if found and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
