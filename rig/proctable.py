"""What ``/proc`` says of the processes the rig started: children, process groups, TCP peers.

The rig signals processes by id only, never by name; these readings find the ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, pgid)`` of a process, or None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2])


def _processes() -> Iterator[tuple[int, str, int, int]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                yield int(entry), *stat


def children_of(pid: int) -> list[int]:
    """Live (not zombie) child processes of ``pid``."""
    return sorted(p for p, state, ppid, _pgid in _processes() if ppid == pid and state != "Z")


def group_members(pgid: int) -> list[int]:
    """Live processes of the process group ``pgid`` (a group the rig created)."""
    return sorted(p for p, state, _ppid, group in _processes() if group == pgid and state != "Z")


def tcp_peer_ports(pid: int) -> set[int]:
    """Remote ports of the established TCP connections a process holds."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "01" and fields[9] in inodes:
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"
