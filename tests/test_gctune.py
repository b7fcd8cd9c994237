"""forge_common.gctune.settle, which the broker and workerd call once serving, freezes what
startup built and collects young objects every 7,000, and cycles made afterwards are still
collected. Run in a child process: the settings are the whole interpreter's."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import child_env

_PROBE = """
import gc, weakref
from forge_common import gctune
class Node: pass
before = Node(); before.me = before  # startup's: frozen, never looked at again
gctune.settle()
after = Node(); after.me = after
gone = weakref.ref(after)
del after
gc.collect()
print(gc.get_threshold()[0], gc.get_freeze_count() > 0, gone() is None)
"""


def test_settle_freezes_startup_and_still_collects_later_cycles() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], env=child_env({}),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["7000", "True", "True"]
