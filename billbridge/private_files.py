"""The files billbridge creates are its user's alone: folders 0700, files 0600, whatever the umask.

They hold what must stay private: the SQLite store (customers, invoices, the sealed OAuth tokens),
the key that seals those tokens (``secret.key``), the data folder around them. Files and folders
that exist already are left as they are (an installation may have chosen otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: Path) -> Path:
    """``path`` as a folder, made 0700 if it is missing (missing parents too)."""
    if not path.is_dir():
        missing = [p for p in (path, *path.parents) if not p.exists()]
        path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        for made in missing:  # mkdir's mode is masked by the umask, and parents get the default
            os.chmod(made, FOLDER_MODE)
    return path


def private_file(path: Path) -> bool:
    """Make an empty 0600 file at ``path`` unless one exists (in a private folder if the folder is
    missing); whether it was made here."""
    private_folder(path.parent)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    os.fchmod(descriptor, FILE_MODE)  # the umask cannot widen it, but be explicit
    os.close(descriptor)
    return True
