"""The exactly-once wrapper's answer files (`<script>.<attempt>.sbatch-{out,err,rc}`) are private from birth.

Run by the real wrapper line in bash, under a permissive login umask (022), with a stand-in `sbatch` first on
PATH that reports the mode of the files its stdout and stderr go to while it runs: a file created 0644 and
tightened afterwards would show 644 here (and stays 0644 if the wrapper is killed before it can tighten it).
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from xm_slurm.scheduler.submit import _sbatch_line, new_submission_token

STAND_IN = "#!/bin/sh\nstat -L -c %a /proc/self/fd/1 /proc/self/fd/2 >&2\necho 4242\n"


def test_answer_files_are_created_0600(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(STAND_IN)
    (bin_dir / "sbatch").chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    line = _sbatch_line(str(script), [], new_submission_token(), 1)
    result = subprocess.run(
        ["bash", "-c", f"umask 022; {line}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "4242"), result.stderr
    assert result.stderr.split() == ["600", "600"]  # stdout and stderr files, while sbatch ran
    for kind in ("out", "err", "rc"):
        answer = tmp_path / f"job.sh.1.sbatch-{kind}"
        assert stat.S_IMODE(answer.stat().st_mode) == 0o600, kind
    assert (tmp_path / "job.sh.1.sbatch-rc").read_text().strip() == "0"
