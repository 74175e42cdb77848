"""retain_freed_memory: a freed block is reused by the next allocation without page faults."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

import portnet as pn

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Allocates, fills and frees a 64 MiB array (a CNN activation is 13-30 MB), then counts
# the minor page faults of doing it again: the second round is what every training step
# after the first one does.
_PROBE = """
import json, resource, sys
import numpy as np
import portnet as pn

retained = pn.retain_freed_memory() if sys.argv[1] == "retain" else None
# numpy may ask for transparent huge pages on large arrays; 4 KiB pages make the count
# independent of the kernel's huge-page settings.
np._core.multiarray._set_madvise_hugepage(False)
n = 64 * 2**20 // 8

def round_trip():
    block = np.empty(n)
    block.fill(1.0)
    del block

round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_trip()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"retained": retained, "faults": faults}))
"""


def _second_round_faults(mode: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's; elsewhere nothing is changed")
def test_a_freed_block_is_reused_without_page_faults():
    default = _second_round_faults("default")
    retained = _second_round_faults("retain")
    assert retained["retained"] is True
    pages = 64 * 2**20 // 4096
    # glibc's default maps a fresh 64 MiB block and faults in every page of it again.
    assert default["faults"] > pages // 2, default
    assert retained["faults"] < pages // 20, (retained, default)


@pytest.mark.skipif(GLIBC, reason="on glibc the settings apply")
def test_without_glibc_nothing_is_changed():
    assert pn.retain_freed_memory() is False
