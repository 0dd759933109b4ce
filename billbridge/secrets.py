"""Sealing secrets the store must keep (rotating OAuth refresh tokens): Fernet with the installation's key.

The key comes from ``BILLBRIDGE_SECRET_KEY`` (or the config file); without one, a key is generated
once into ``<data_dir>/secret.key`` (mode 0600, in a 0700 folder if it makes it), which suits the embedded single-machine setup.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from billbridge.private_files import FILE_MODE, private_folder


class SealError(ValueError):
    """A sealed value that this installation's key cannot open."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._key = key

    def derive(self, label: str) -> str:
        """A secret of its own for ``label`` (a monitor's webhook signing secret), derived from the
        installation's key: never stored, the same every time it is asked for."""
        return "whsec_" + hmac.new(self._key, label.encode(), hashlib.sha256).hexdigest()

    @classmethod
    def from_settings(cls, secret_key: str | None, data_dir: Path) -> Sealer:
        if secret_key:
            return cls(secret_key.encode())
        path = data_dir / "secret.key"
        if not path.exists():
            private_folder(data_dir)
            _publish_key(path)
        return cls(path.read_bytes().strip())

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def open(self, sealed: str, max_age: int | None = None) -> str:
        """The sealed text; with ``max_age``, only if sealed at most that many seconds ago."""
        try:
            return self._fernet.decrypt(sealed.encode(), ttl=max_age).decode()
        except InvalidToken as exc:
            raise SealError(
                "a sealed secret does not open with this installation's key (BILLBRIDGE_SECRET_KEY)"
            ) from exc


def _publish_key(path: Path) -> None:
    """Write a new key to ``path`` unless another process got there first. Two processes starting at
    once (two pushes of a fresh installation) both find no key: each writes its own to a file of its
    own, then links it into place, which only the first link does; the other keeps the first key. The
    key file is never seen half written."""
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(Fernet.generate_key())
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process's key is in place: everyone uses that one
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
