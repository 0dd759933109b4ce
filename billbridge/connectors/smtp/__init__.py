"""Sending e-mail through an SMTP server (smtplib), exactly once with the caller's help.

SMTP gives no way to ask a server whether it already took a message, so the boundary is drawn at
the DATA command: ``send`` runs the envelope (MAIL FROM, RCPT TO), then calls ``before_data`` (the
caller commits the message as ``sending``), then DATA. Everything before DATA that fails is safe to
try again (the server took nothing); a reply to DATA says plainly whether the server took it; only a
connection lost (or a crash) after DATA began leaves the outcome unknown, and the caller records the
message ``unconfirmed`` instead of sending it again. The message carries a Message-ID fixed at its
creation, so a person checking a mailbox can tell.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from types import TracebackType

from billbridge.connectors.errors import Classified, ErrorKind
from billbridge.settings import SmtpSettings


class SmtpFailed(Exception):
    """The server did not take the message; ``classified`` says whether trying again may work
    (4xx, a connection lost before DATA) or not (5xx: an invalid address, a refused sender)."""

    def __init__(self, classified: Classified) -> None:
        super().__init__(classified.reason)
        self.classified = classified


class SmtpUnavailable(Exception):
    """The server, or how billbridge is set up to use it, is wrong, not the message: the login was
    refused (535), STARTTLS is not offered, the greeting was a refusal (421, 5xx), the connection was
    refused, or the server wants a login none is configured for (530). Every message would meet the
    same answer, so the caller stops and leaves them queued. The text names the host and the user,
    never the password."""


class SmtpUnknown(Exception):
    """The connection was lost after DATA began: the server may or may not have the message."""


@dataclass(frozen=True)
class Sent:
    answer: str  # the server's reply to DATA (its queue id, usually)
    refused: tuple[str, ...] = ()  # recipients the server refused at RCPT, each with its answer


def classify_reply(code: int, text: bytes | str, what: str) -> Classified:
    answer = text.decode(errors="replace") if isinstance(text, bytes) else text
    kind = ErrorKind.RETRIABLE if 400 <= code < 500 else ErrorKind.FATAL
    return Classified(kind, f"{what}: the SMTP server answered {code} {answer}".strip())


class SmtpSender:
    """One connection to the configured server, opened on first use and reused for a batch."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._client: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpSender:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _context(self) -> ssl.SSLContext:
        cafile = str(self.settings.ca_bundle) if self.settings.ca_bundle else None
        return ssl.create_default_context(cafile=cafile)

    def _where(self) -> str:
        s = self.settings
        user = f" as user {s.username!r}" if s.username else " without a login"
        return f"the SMTP server {s.host}:{s.port} (tls {s.tls}{user})"

    def _connect(self) -> smtplib.SMTP:
        """A connection, greeted, encrypted and logged in as configured; SmtpUnavailable otherwise."""
        s = self.settings
        client: smtplib.SMTP | None = None
        try:
            if s.tls == "tls":
                client = smtplib.SMTP_SSL(
                    s.host, s.port, local_hostname=s.helo_name, timeout=s.timeout_seconds, context=self._context()
                )
            else:
                client = smtplib.SMTP(s.host, s.port, local_hostname=s.helo_name, timeout=s.timeout_seconds)
            client.ehlo()
            if s.tls == "starttls":
                if not client.has_extn("starttls"):
                    raise SmtpUnavailable(
                        f"{self._where()} does not offer STARTTLS, which [smtp] tls = starttls requires"
                    )
                client.starttls(context=self._context())
                client.ehlo()
            if s.username:
                password = s.password.get_secret_value() if s.password else ""
                client.login(s.username, password)
        except SmtpUnavailable:
            _discard(client)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _discard(client)
            answer = _answer(exc.smtp_error)
            raise SmtpUnavailable(
                f"{self._where()} refused the login: {exc.smtp_code} {answer} (check [smtp] username and password)"
            ) from None
        except smtplib.SMTPResponseException as exc:  # the greeting (421, 554), EHLO or STARTTLS refused
            _discard(client)
            raise SmtpUnavailable(
                f"{self._where()} refused the connection: {exc.smtp_code} {_answer(exc.smtp_error)}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, unreachable, TLS, AUTH not offered
            _discard(client)
            raise SmtpUnavailable(f"cannot use {self._where()}: {exc}") from None
        return client

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.quit()
            except (OSError, smtplib.SMTPException):
                self._client.close()
            self._client = None

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def send(
        self,
        message: EmailMessage | bytes,
        sender: str,
        recipients: Sequence[str],
        before_data: Callable[[], bool],
        meanwhile: Callable[[], None] | None = None,
        cc: Sequence[str] = (),
    ) -> Sent | None:
        """Send ``message`` (or its bytes, CRLF-ended as ``policy.SMTP`` writes them) to
        ``recipients`` (its ``to``) and ``cc``; None when ``before_data`` said not to (another run has
        it). SMTP answers each RCPT on its own: the message goes to the addresses the server
        accepted and ``Sent.refused`` names the others with their answers; it fails (SmtpFailed, the
        first ``to`` refusal) only when no ``to`` recipient was accepted, retriable when one of those
        refusals was (4xx). ``meanwhile`` runs once the message is on its way, while the server takes
        it in and before its answer is read (the caller prepares its next message then, instead of
        leaving the server idle afterwards); it must not raise. Raises SmtpFailed (the server did not
        take it) or SmtpUnknown (it may have)."""
        client = self._client or self._connect()
        self._client = client
        try:
            code, reply = client.docmd("mail", f"FROM:{quoted(sender)}")  # smtplib's mail(), see quoted()
            if code == 530:  # a login is required and none is configured: no message can go out
                self._drop()
                raise SmtpUnavailable(
                    f"{self._where()} requires a login: {code} {_answer(reply)} (set [smtp] username)"
                )
            if code != 250:
                client.rset()
                raise SmtpFailed(classify_reply(code, reply, f"MAIL FROM:<{sender}>"))
            refused: list[Classified] = []
            accepted_to = 0
            for position, address in enumerate((*recipients, *cc)):
                code, reply = client.docmd("rcpt", f"TO:{quoted(address)}")
                if code in (250, 251):
                    accepted_to += position < len(recipients)
                    continue
                refused.append(classify_reply(code, reply, f"RCPT TO:<{address}>"))
                if position == len(recipients) - 1 and not accepted_to:
                    break  # no ``to`` was accepted: the cc alone do not make the message
            if not accepted_to:
                client.rset()
                first = refused[0] if refused else Classified(ErrorKind.FATAL, "no recipient to send to")
                kind = ErrorKind.RETRIABLE if any(r.kind == ErrorKind.RETRIABLE for r in refused) else ErrorKind.FATAL
                raise SmtpFailed(Classified(kind, first.reason))
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._drop()
            raise SmtpFailed(Classified(ErrorKind.RETRIABLE, f"connection lost before DATA: {exc}")) from None
        if not before_data():
            client.rset()
            return None
        try:
            content = message if isinstance(message, bytes) else message.as_bytes(policy=policy.SMTP)
            code, reply = _data(client, content, meanwhile)
        except smtplib.SMTPDataError as exc:  # the server answered DATA (or the message) with a refusal
            raise SmtpFailed(classify_reply(exc.smtp_code, exc.smtp_error, "DATA")) from None
        except (TimeoutError, OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise SmtpUnknown(f"connection lost during DATA: {exc}") from None
        if code != 250:  # smtplib returns the final reply to the message rather than raising
            raise SmtpFailed(classify_reply(code, reply, "DATA"))
        return Sent(reply.decode(errors="replace"), tuple(r.reason for r in refused))


def _answer(text: bytes | str) -> str:
    return text.decode(errors="replace") if isinstance(text, bytes) else text


def _discard(client: smtplib.SMTP | None) -> None:
    if client is not None:
        client.close()


_LEADING_DOT = re.compile(rb"(?m)^\.")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def quoted(address: str) -> str:
    """An address as MAIL FROM and RCPT TO take it: ``smtplib.quoteaddr``, whose parse of the address
    (``email.utils.parseaddr``) was a tenth of the CPU of sending a message; a plain ASCII dot-atom
    address, what a billing contact's is, is simply put in angle brackets (the same answer)."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _data(client: smtplib.SMTP, content: bytes, meanwhile: Callable[[], None] | None) -> tuple[int, bytes]:
    """smtplib's ``SMTP.data`` (DATA, 354, the message with leading dots doubled, the final reply),
    with ``meanwhile`` run between sending the message and reading the server's answer to it.
    ``content`` has CRLF line ends already (``policy.SMTP``)."""
    client.putcmd("data")
    code, reply = client.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    quoted = _LEADING_DOT.sub(b"..", content)
    if not quoted.endswith(b"\r\n"):
        quoted += b"\r\n"
    client.send(quoted + b".\r\n")
    if meanwhile is not None:
        meanwhile()
    return client.getreply()
