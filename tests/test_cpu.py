"""squeezedet.cpu.keep_freed_memory: glibc keeps large freed blocks for the next allocation."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from squeezedet import cpu

GLIBC_LINUX = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Six times: a 64 MiB tensor written through, then freed. Prints the page faults of each round.
ROUNDS = """
import resource, sys, torch
from squeezedet import cpu
print(cpu.keep_freed_memory())
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(64 * 2**20 // 4)
    t.fill_(1.0)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del t
"""

PAGES_64MIB = 64 * 2**20 // 4096  # a fresh 64 MiB block faults in this many 4 KiB pages


def _rounds(**env: str) -> tuple[bool, list[int]]:
    clean = {k: v for k, v in os.environ.items()
             if not (k.startswith("MALLOC_") or k == cpu.KEEP_FREED_MEMORY_VARIABLE)}
    out = subprocess.run([sys.executable, "-c", ROUNDS], env={**clean, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", [int(x) for x in out[1:]]


@pytest.mark.skipif(not GLIBC_LINUX, reason="glibc's malloc only")
def test_freed_blocks_are_reused_without_new_pages() -> None:
    kept, faults = _rounds()
    assert kept
    # glibc's default maps a block above 32 MiB afresh every round (PAGES_64MIB faults each);
    # kept, later rounds find freed heap memory already faulted in (not necessarily every one:
    # small allocations between the rounds can split the freed space)
    assert min(faults[1:]) < PAGES_64MIB // 8, faults


@pytest.mark.skipif(not GLIBC_LINUX, reason="glibc's malloc only")
def test_opt_out_leaves_glibc_as_it_is() -> None:
    kept, faults = _rounds(**{cpu.KEEP_FREED_MEMORY_VARIABLE: "0"})
    assert not kept
    # each round maps and faults in the whole block again (the cost the setting removes): at least
    # one fault per 2 MiB, should the kernel back it with huge pages
    assert all(f >= 64 // 2 for f in faults[1:]), faults


def test_settings_from_the_environment_win(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu.keep_freed_memory.cache_clear()
    try:
        monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
        assert cpu.keep_freed_memory() is False
        cpu.keep_freed_memory.cache_clear()
        monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
        monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0")
        assert cpu.keep_freed_memory() is False
        cpu.keep_freed_memory.cache_clear()
        monkeypatch.delenv("GLIBC_TUNABLES")
        monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
        assert cpu.keep_freed_memory() is False
    finally:
        cpu.keep_freed_memory.cache_clear()
