"""The on-disk cache of compiled object code.

An entry is one file named by its key (a hex sha256 the engine derives from everything the
code depends on): `MAGIC`, the sha256 of the payload, then the payload (an object file).
A file with a wrong magic or checksum, or cut short, is deleted and reported as a miss, so
nothing damaged ever reaches LLVM. Writes go to a temporary file renamed into place, so a
reader never sees half an entry. A directory that cannot be created or written disables
the cache instead of failing the run.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

MAGIC = b"AVMJIT\x00\x01"
_DIGEST = 32


class ObjectCache:
    """Object files by key, in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.enabled = True

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.o.avmjit"

    def load(self, key: str) -> bytes | None:
        """The payload stored under ``key``, or None (a damaged entry is removed)."""
        if not self.enabled:
            return None
        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        header = len(MAGIC) + _DIGEST
        payload = data[header:]
        if (
            len(data) <= header
            or data[: len(MAGIC)] != MAGIC
            or hashlib.sha256(payload).digest() != data[len(MAGIC) : header]
        ):
            path.unlink(missing_ok=True)
            return None
        return payload

    def store(self, key: str, payload: bytes) -> None:
        """Write an entry atomically; on any OS error, stop using the cache."""
        if not self.enabled:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(MAGIC + hashlib.sha256(payload).digest() + payload)
                os.replace(temporary, self.path(key))
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError:
            self.enabled = False


def default_cache_dir() -> Path | None:
    """``$AVM_JIT_CACHE`` if set (``off`` or empty: no cache), else ``avm/jit`` under
    ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    setting = os.environ.get("AVM_JIT_CACHE")
    if setting is not None:
        return None if setting.strip() in ("", "off") else Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "avm" / "jit"
