"""Describe the machine a benchmark ran on: CPU count, CPU model and memory, read from /proc."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO_PATH = Path("/proc/cpuinfo")
MEMINFO_PATH = Path("/proc/meminfo")
KIB_PER_GIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MachineInfo:
    """The figures a benchmark report states about its machine; None where unknown."""

    cpus: int | None
    cpu_model: str | None
    memory_gib: float | None

    def describe(self) -> str:
        cpus = f"{self.cpus} CPUs" if self.cpus is not None else "unknown CPU count"
        model = self.cpu_model or "unknown CPU model"
        memory = f"{self.memory_gib:.1f} GiB RAM" if self.memory_gib is not None else "unknown RAM"
        return f"{cpus} ({model}), {memory}"


def _cpu_model(cpuinfo: str) -> str | None:
    for line in cpuinfo.splitlines():
        key, separator, value = line.partition(":")
        if separator and key.strip() == "model name":
            return value.strip()
    return None


def _memory_gib(meminfo: str) -> float | None:
    for line in meminfo.splitlines():
        key, separator, value = line.partition(":")
        if separator and key.strip() == "MemTotal":
            return int(value.split()[0]) / KIB_PER_GIB
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def describe_machine() -> MachineInfo:
    """Return this machine's CPUs usable by this process, CPU model and total memory."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return MachineInfo(
        cpus=cpus,
        cpu_model=_cpu_model(_read(CPUINFO_PATH)) or platform.processor() or None,
        memory_gib=_memory_gib(_read(MEMINFO_PATH)),
    )
