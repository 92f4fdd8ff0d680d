"""Local processes, through psutil: shared by the servers the project starts itself."""

from __future__ import annotations

import psutil


def alive(pid: int) -> bool:
    """True while `pid` runs. A killed process whose parent never reaps it (a container without
    an init) stays a zombie: that counts as dead."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:   # someone else's live process
        return True


def cmdline(pid: int) -> list[str] | None:
    """The process's argv, or None when it is gone or hidden from us."""
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...); [] once it is gone."""
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
