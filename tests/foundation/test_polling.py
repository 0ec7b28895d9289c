"""tests/polling.py: the one way tests wait, with its 60 s ceiling."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from polling import CEILING_S, run_to_end, wait_for


def test_a_wait_above_the_ceiling_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 60 s"):
        wait_for(lambda: True, timeout_s=CEILING_S + 1)


def test_progress_pushes_the_deadline_back_and_its_absence_fails() -> None:
    start = time.monotonic()
    ticks = iter(range(10**6))
    # the predicate comes true after 0.6 s, three times the timeout, while progress moves
    assert wait_for(lambda: time.monotonic() - start > 0.6, 0.2, 0.01, progress=lambda: next(ticks))
    with pytest.raises(AssertionError, match="without progress"):
        wait_for(lambda: False, 0.2, 0.01, progress=lambda: 0)


def test_run_to_end_captures_output_and_kills_a_silent_process(tmp_path: Path) -> None:
    done = run_to_end(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"]
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n", "err\n")
    # talks for twice the ceiling: not killed
    talker = "import time\nfor i in range(40):\n    print(i, flush=True); time.sleep(0.1)\n"
    assert run_to_end([sys.executable, "-c", talker], timeout_s=2).stdout.split()[-1] == "39"
    pid_file = tmp_path / "pid"
    silent = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(30)"
    )
    with pytest.raises(AssertionError, match="without progress"):
        run_to_end([sys.executable, "-c", silent], timeout_s=2)
    if pid_file.exists():  # else it was killed before it even got to write it
        with pytest.raises(ProcessLookupError):  # killed and reaped, not waited for
            os.kill(int(pid_file.read_text()), 0)
