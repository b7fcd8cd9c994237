"""The suite's service logs (every broker, workerd and gateway a test starts writes one) are
removed when the test process exits, instead of piling up in the temporary directory run after
run; a failing test shows them before then."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

STARTS_A_SERVICE_LOG = """
from tests.support.processes import ServiceProcess
p = ServiceProcess("broker-0")
p.log.write_text("a line of the broker's log\\n")
print(p.log)
"""


def test_a_service_log_is_written_in_the_temporary_directory_and_gone_after_the_run(
        tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", STARTS_A_SERVICE_LOG], cwd=REPO,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    log = Path(done.stdout.strip())
    assert log.is_relative_to(tmp_path), log
    assert not log.exists()
    assert list(tmp_path.iterdir()) == []
