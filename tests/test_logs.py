"""A job's usage line: its CPU time counted whole, the waited-for children included, even when it fails."""

import subprocess
import sys
import textwrap

import pytest

from dosepaint.logs import read_usage

# A job burns CPU in its own process, then waits for a child that burns its own; both print their CPU
# seconds (time.process_time: user + system of the process, all threads), and the job its total after the
# log was closed.
JOB = textwrap.dedent(
    """
    import resource, subprocess, sys, time
    from dosepaint.logs import logged

    def burn(seconds):
        t = time.process_time()
        while time.process_time() - t < seconds:
            sum(i * i for i in range(10_000))
        return time.process_time() - t

    try:
        with logged(sys.argv[1]):
            own = burn(0.4)
            child = subprocess.run([sys.executable, "-c", "import time\\nt = time.process_time()\\n"
                                    "while time.process_time() - t < 0.4: sum(range(10_000))\\n"
                                    "print(time.process_time())"], capture_output=True, text=True, check=True)
            print(own, float(child.stdout))
            if sys.argv[2] == "fail":
                raise ValueError("bad input")
    finally:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        print(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime)
    """
)


@pytest.mark.parametrize("outcome", ["ok", "fail"])
def test_usage_line_counts_the_jobs_cpu_and_its_childrens_even_when_it_fails(tmp_path, outcome):
    log = tmp_path / "job.log"
    proc = subprocess.run([sys.executable, "-c", JOB, str(log), outcome], capture_output=True, text=True)
    assert proc.returncode == (0 if outcome == "ok" else 1), proc.stderr
    lines = proc.stdout.split()
    own, child, total_after = float(lines[0]), float(lines[1]), float(lines[2])
    usage = read_usage(log)
    assert usage is not None, log.read_text()
    # Everything the job and its child burnt is in it, start-up included, and nothing after the log closed.
    assert own >= 0.4 and child >= 0.4
    assert own + child <= usage["cpu_s"] <= total_after + 0.01
    assert usage["cpu_s"] == pytest.approx(usage["user_s"] + usage["system_s"], abs=0.011)
    assert usage["max_rss_mb"] > 5
    if outcome == "fail":
        text = log.read_text()
        assert text.index("ValueError: bad input") < text.index("job usage:")


def test_a_log_without_usage_line_reads_none(tmp_path):
    log = tmp_path / "old.log"
    log.write_text("2026-01-01 00:00:00,000 INFO dosepaint: planned SYN001\n")
    assert read_usage(log) is None
