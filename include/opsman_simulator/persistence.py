"""``state.json`` on disk: the atomic write every change goes through, and reading it back.

The whole state is one JSON document (``indent=1, sort_keys=True``) written with a temporary file in
the same directory + fsync + ``os.replace``, so a crash leaves either the old or the new state.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

STATE_VERSION = 1


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir + fsync + os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def read_state(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if data.get("version") != STATE_VERSION:
        raise RuntimeError(f"unsupported state version in {path}")
    return data


def write_state(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode())
