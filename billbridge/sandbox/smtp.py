"""A local SMTP server (aiosmtpd) for the demo and tests, behaving like a submission server: STARTTLS
with a throwaway certificate, then AUTH PLAIN/LOGIN with one user required before MAIL (a wrong
password is answered 535, no login 530), and a mailbox in memory (and, when given, a folder of ``.eml``
files a person can open). Faults on demand: refuse some recipients (550), answer DATA with a
temporary failure (451), take a message and drop the connection before answering (the case
billbridge must not send twice), or answer every connection's greeting with a refusal (421, 554).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from billbridge.sandbox.tls import throwaway_tls

USER, PASSWORD = "billbridge", "sandbox-smtp-password"


class _NoLoginDataWarning(logging.Filter):
    """aiosmtpd (1.4) logs "Session.login_data is deprecated" at WARNING on every successful AUTH, even
    for an authenticator of its new API that never reads it (its own code sets the legacy attribute):
    noise in the demo's output, and a record that reached a test's captured output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


logging.getLogger("mail.log").addFilter(_NoLoginDataWarning())


@dataclass
class Faults:
    refuse: set[str] = field(default_factory=set)  # recipients answered 550
    tempfail_data: int = 0  # the next N DATA commands get 451
    drop_after_data: int = 0  # the next N messages are taken, then the connection drops unanswered
    hold_after_data: float = 0.0  # seconds each message is held, taken but not yet answered
    greeting: str | None = None  # e.g. "421 4.3.2 down for maintenance": every connection is refused with it


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


class Mailbox:
    """What the server took, in order; thread-safe (the server runs in its own thread)."""

    def __init__(self, folder: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._items: list[Received] = []
        self.folder = folder
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def add(self, item: Received, raw: bytes) -> None:
        with self._lock:
            self._items.append(item)
            count = len(self._items)
        if self.folder is not None:
            (self.folder / f"{count:06d}.eml").write_bytes(raw)

    def items(self) -> list[Received]:
        with self._lock:
            return list(self._items)


class _Handler:
    def __init__(self, mailbox: Mailbox, faults: Faults) -> None:
        self.mailbox, self.faults = mailbox, faults

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook names
        self, server: Any, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.faults.refuse:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.faults.tempfail_data > 0:
            self.faults.tempfail_data -= 1
            return "451 4.3.0 try again later"
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mailbox.add(Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), parsed), raw)
        if self.faults.hold_after_data:
            await asyncio.sleep(self.faults.hold_after_data)
        if self.faults.drop_after_data > 0:
            self.faults.drop_after_data -= 1
            server.transport.close()
        return "250 2.0.0 OK queued"


class _Server(SMTP):
    """aiosmtpd's SMTP session, with the greeting fault: the refusal, then the connection closed."""

    def __init__(self, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.faults = handler.faults

    async def _handle_client(self) -> None:
        if self.faults.greeting:
            await self.push(self.faults.greeting)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Server(self.handler, **self.SMTP_kwargs)


def _authenticator(password: str) -> Any:
    def authenticate(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), password.encode())
        return AuthResult(success=ok, handled=False)

    return authenticate


class SmtpSandbox:
    """The server on loopback; ``settings()`` are what billbridge's ``[smtp]`` needs to use it."""

    def __init__(
        self,
        *,
        port: int = 0,
        folder: Path | None = None,
        faults: Faults | None = None,
        password: str = PASSWORD,
        starttls: bool = True,
    ) -> None:
        """``password`` is the one user's; ``starttls`` False makes a server without STARTTLS (and
        so without AUTH, which it offers only over TLS): a misconfigured one to test against."""
        self.mailbox = Mailbox(folder)
        self.faults = faults or Faults()
        self.password = password
        self.tls = throwaway_tls()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        self.controller = _Controller(
            _Handler(self.mailbox, self.faults),
            hostname="127.0.0.1",
            port=port or _free_port(),
            tls_context=context if starttls else None,
            require_starttls=starttls,
            authenticator=_authenticator(password),
            auth_required=True,
            auth_require_tls=True,
            server_hostname="localhost",
            ready_timeout=10.0,
        )

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> SmtpSandbox:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settings(self) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "tls": "starttls",
            "username": USER,
            "password": self.password,
            "ca_bundle": str(self.tls.ca),
        }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
