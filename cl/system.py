"""What the study asks of the machine: Debian packages for data and WordNet, glibc's memory, whether
the CPU computes bf16 natively, and environment variables set for a while (a kernel or process
started meanwhile inherits them).

Both are optional: without apt-get (or root) the set-up says what to install; without glibc
training runs, only slower.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from pathlib import Path


def apt_install(packages: list[str]) -> bool:
    """Install Debian packages with apt-get where that is possible (apt-get present, running as root).

    Runs ``apt-get update`` only when the first install fails. True on success.
    """
    apt = shutil.which("apt-get")
    if apt is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    print(f"installing {' '.join(packages)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def ok(*args) -> bool:
        return subprocess.run([apt, *args], env=env, capture_output=True).returncode == 0

    install = ("install", "-y", "--no-install-recommends", *packages)
    return ok(*install) or (ok("update") and ok(*install))


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the OS.

    By default glibc hands large freed blocks (and the top of the heap) back to the OS, so
    every training step page-faults its activations back in (``make bench`` times the step).
    The process keeps its peak memory, which is what a training process holds anyway. Returns
    False where there is no glibc (macOS, musl), which changes nothing but speed.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # malloc.h
    return all(libc.mallopt(option, value) == 1 for option, value in (
        (m_mmap_threshold, 32 * 2**20),  # glibc's maximum: blocks below it come from the heap
        (m_trim_threshold, 2**31 - 1),  # never give the heap's top back
        (m_top_pad, 256 * 2**20)))


@contextlib.contextmanager
def environment(**values):
    """The environment variables ``values`` set for the body: a kernel started in it inherits them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16``); None where it cannot be
    told (no ``/proc/cpuinfo``). Without it, bf16 autocast on a CPU is emulated: the small CNN's
    training step ran about 10× slower than in float32 on such a 2-core AMD EPYC (67 against 674
    images/s; ``make bench`` measures the ratio on any machine)."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return None
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))
