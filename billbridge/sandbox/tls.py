"""A throwaway certificate authority and a server certificate for localhost / 127.0.0.1 (trustme).

simple-salesforce only builds https URLs, so the Salesforce sandbox must speak TLS; clients trust
``ca`` explicitly (a ``requests.Session`` also needs ``trust_env = False``, or ``REQUESTS_CA_BUNDLE``
overrides ``verify``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate a client trusts
    cert: Path  # the server's certificate chain
    key: Path  # the server's private key


@cache
def throwaway_tls() -> TlsFiles:
    """One CA and certificate per process, written to a private temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="billbridge-tls-"))
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.key))
    with files.cert.open("wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    return files
