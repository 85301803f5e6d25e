"""What a job pays before it works: the interpreter, Snakemake's script preamble and its stage's imports.

Every rule script runs in a fresh interpreter (Snakemake's ``script:``), so each of a cohort's jobs pays
these seconds again. Prints, per stage module, the median over ``repeat`` fresh interpreters of the
wall time of ``import dosepaint.stages.<stage>`` and the heavy libraries it loads, and the cost of the
interpreter and of ``snakemake.script`` alone. Time it alone on the machine.

Usage: python benchmarks/startup.py [repeat]
"""

from __future__ import annotations

import statistics
import subprocess
import sys

STAGES = ("check", "ingest", "dwi", "pet", "synthesize", "plan", "robustness", "export", "split", "tcp_fit",
          "summary", "heldout", "figures", "tables")  # fmt: skip
HEAVY = ("SimpleITK", "pydicom", "pandas", "scipy.stats", "statsmodels", "lifelines", "matplotlib", "pyRadPlan")


def seconds(code: str, repeat: int) -> tuple[float, str]:
    """Median wall seconds of ``code`` after the interpreter's start, and what it printed last."""
    timed = f"import time\nt = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)"
    runs = [subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, check=True)
            for _ in range(repeat)]  # fmt: skip
    lines = [r.stdout.split() for r in runs]
    return statistics.median(float(ln[-1]) for ln in lines), " ".join(lines[0][:-1])


def interpreter(repeat: int) -> float:
    """Median wall seconds of an interpreter that imports nothing."""
    import time

    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main(repeat: int = 5) -> None:
    print(f"interpreter alone: {interpreter(repeat):.3f} s")
    print(f"snakemake.script (every rule script's preamble): {seconds('import snakemake.script', repeat)[0]:.3f} s")
    print(f"{'stage':<12} {'import s':>9}  heavy libraries loaded")
    for stage in STAGES:
        loaded = f"','.join(k for k in {HEAVY!r} if k in sys.modules) or '-'"
        probe = f"import sys, dosepaint.stages.{stage}\nprint({loaded})"
        sec, libs = seconds(probe, repeat)
        print(f"{stage:<12} {sec:9.3f}  {libs}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
