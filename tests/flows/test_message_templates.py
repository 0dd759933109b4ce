"""Message templates as files per entity and language: a contact's language picks its folder, an
entity's own folder comes before ``default``, English and then the built-in templates are the
fallback; a broken file is refused at start naming the file and line; a statement rendered from the
files reaches a real SMTP server (aiosmtpd) in the contact's language."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from billbridge.app.cli import app
from billbridge.flows.message_templates import TemplateDir, search_path, template_dir
from billbridge.flows.messages import send_messages
from billbridge.flows.statements import request_statements
from billbridge.mapping.messages import TemplateProblem, render
from billbridge.sandbox.smtp import SmtpSandbox
from billbridge.store.db import Store, open_store
from tests.flows.messaging_world import settings_for, world

pytestmark = pytest.mark.slow  # an SMTP server, the store on each backend

CONTEXT = {
    "language": "fr",
    "currency": "EUR",
    "customer": {"customer_ref": "c0", "name": "Globex"},
    "entity": {"entity_ref": "us", "name": "Acme", "payment_instructions": None},
    "invoice": None,
    "details": {},
    "payment": None,
    "pay_link": None,
    "statement": {"as_of": "2026-02-15", "payment_days": 30, "sections": []},
}


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    write(root, "default/fr/statement.subject", "Relevé de compte au {{ statement.as_of|day }}")
    write(root, "default/fr/statement.txt", "Bonjour {{ customer.name }},\nvoici votre relevé.\n")
    write(root, "us/fr/statement.subject", "Acme : relevé au {{ statement.as_of|day }}")
    write(root, "default/en/statement.subject", "Your statement as of {{ statement.as_of|day }}")
    write(root, "default/en/statement.html", "<p>{{ text }}</p><p>{{ 1234.5|money }}</p>")
    return root


def test_search_path_goes_language_then_base_language_then_english_entity_before_default() -> None:
    assert search_path("us", "fr-CH") == [
        "us/fr-CH",
        "default/fr-CH",
        "us/fr",
        "default/fr",
        "us/en",
        "default/en",
    ]
    assert search_path("eu", "en") == ["eu/en", "default/en"]


def test_a_contacts_language_picks_its_files_and_english_is_the_fallback(folder: Path) -> None:
    files = TemplateDir(folder)
    assert files.check() == 5
    french = render("statement", CONTEXT, env=files.environment("us", "fr", "EUR"))
    assert french.subject == "Acme : relevé au 15 févr. 2026"  # the entity's own file before default's
    assert french.text == "Bonjour Globex,\nvoici votre relevé.\n"  # default/fr: the entity has no text
    other = render("statement", CONTEXT, env=files.environment("eu", "fr-CH", "EUR"))
    assert other.subject == "Relevé de compte au 15 févr. 2026"  # fr-CH falls back to fr, eu to default
    german = render("statement", {**CONTEXT, "language": "de"}, env=files.environment("us", "de", "EUR"))
    assert german.subject == "Your statement as of 15.02.2026"  # no German: the English file
    assert german.text.startswith("Hello Globex,\n\nhere is your statement of account")  # the built-in text
    assert german.html.startswith("<p>Hello Globex,") and "<p>1.234,50\xa0€</p>" in german.html.replace(" ", "\xa0")
    reminder = render(
        "dunning",
        {
            **CONTEXT,
            "language": "en",
            "invoice": {"number": "US-INV-1", "open": "10", "due_date": "2026-02-01"},
            "details": {"final": True, "reason_text": "the card has expired"},
        },
        env=files.environment("us", "en", "EUR"),
    )
    assert reminder.subject == "Final notice: invoice US-INV-1"  # kinds without files: the built-in ones


@pytest.mark.parametrize(
    ("relative", "text", "problem"),
    [
        ("us/fr/statement.txt", "Bonjour\n{% for x in statement.sections %}\n{{ x }\n", r"line 3: unexpected '}'"),
        (
            "default/en/reminder.txt",
            "Hello\n\n{{ invoice.number }} {{ balance_due }}\n",
            r"line 3: unknown variable 'balance_due'",
        ),
        ("default/en/receipt.subject", "{{ payment.amount|monney }}", r"line 1: No filter named 'monney'"),
        ("default/en/statment.txt", "hello", r"not a message template"),
        ("statement.txt", "hello", r"not a message template"),
    ],
)
def test_a_broken_file_is_refused_at_start_naming_file_and_line(
    folder: Path, relative: str, text: str, problem: str
) -> None:
    path = write(folder, relative, text)
    with pytest.raises(TemplateProblem, match=problem) as refused:
        template_dir(folder)
    assert str(refused.value).startswith(str(path))


def test_variables_set_in_a_template_are_known(folder: Path) -> None:
    write(
        folder,
        "default/en/statement.txt",
        "{% set total = namespace(n=0) %}{% for s in statement.sections %}{{ loop.index }} {{ s.balance }}{% endfor %}"
        "{% macro line(item) %}{{ item }}{% endmacro %}{{ line(customer.name) }}",
    )
    assert TemplateDir(folder).check() == 6


def test_a_statement_from_the_files_reaches_smtp_in_each_contacts_language(
    store: Store, database_url: str, tmp_path: Path, folder: Path
) -> None:
    world(store, 2, languages=("fr", "de"))
    with SmtpSandbox() as smtp:
        settings = settings_for(smtp, database_url, tmp_path).model_copy(update={"message_templates_dir": folder})
        made = request_statements(store, ["c0", "c1"], date(2026, 2, 15), payment_days=30)
        assert made.created == {"statement.queued": 2}
        assert send_messages(store, settings).outcomes == {"statement": 2}
        received = {r.recipients[0]: r.message for r in smtp.mailbox.items()}
    french, german = received["ap0@c0.example"], received["ap1@c1.example"]
    assert french["Subject"] == "Acme : relevé au 15 févr. 2026"
    body = french.get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == "Bonjour Customer 0,\nvoici votre relevé.\n"
    assert german["Subject"] == "Your statement as of 15.02.2026"
    text = german.get_body(("plain",))
    assert text is not None and "1.200,00 $ open" in text.get_content()  # the built-in text, German numbers


def test_the_command_refuses_a_broken_file_before_doing_anything(
    database_url: str, tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(database_url)
    world(store, 1)
    store.dispose()
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_MESSAGE_TEMPLATES_DIR", str(folder))
    monkeypatch.setenv("COLUMNS", "400")
    runner = CliRunner()
    result = runner.invoke(app, ["statements", "preview", "--customer", "c0", "--as-of", "2026-02-15"])
    assert result.exit_code == 0, result.output
    assert "Acme : relevé" not in result.output and "Your statement as of Feb 15, 2026" in result.output
    path = write(folder, "us/en/statement.txt", "Hello {{ customer.name }}\n{{ statement.total|money }\n")
    for args in (
        ["statements", "preview", "--customer", "c0"],
        ["statements", "send", "--customer", "c0"],
        ["messages", "send"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert f"error: {path}, line 2: unexpected '}}'" in result.output, result.output
    with open_store(database_url).read() as session:
        from billbridge.store import messages

        assert messages.listing(session) == []  # nothing was made


def test_a_file_failing_when_rendered_names_customer_file_and_line_and_the_others_go_on(
    store: Store, database_url: str, tmp_path: Path, folder: Path
) -> None:
    path = write(folder, "default/fr/statement.txt", "Bonjour,\n\n{{ customer.nmae }}\n")  # passes the check
    world(store, 2, languages=("fr", "de"))
    with SmtpSandbox() as smtp:
        settings = settings_for(smtp, database_url, tmp_path).model_copy(update={"message_templates_dir": folder})
        request_statements(store, ["c0", "c1"], date(2026, 2, 15), payment_days=30)
        summary = send_messages(store, settings)
        assert summary.outcomes == {"statement": 1, "failed": 1}
        assert [r.recipients for r in smtp.mailbox.items()] == [("ap1@c1.example",)]
    with store.read() as session:
        from billbridge.store import messages

        [failed] = messages.listing(session, state="failed")
    assert failed["customer_ref"] == "c0"
    assert failed["last_error"].startswith(f"statement message {failed['id']} (customer c0): {path}, line 3: ")
    assert "has no attribute 'nmae'" in failed["last_error"]


def test_the_daily_flows_refuse_a_broken_file_at_start(
    database_url: str, tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billbridge.flows.messages import send_reminders
    from billbridge.flows.quote_to_cash import quote_to_cash

    path = write(folder, "us/de/invoice.subject", "Rechnung {{ invoice.number }")
    monkeypatch.setenv("BILLBRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("BILLBRIDGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BILLBRIDGE_MESSAGE_TEMPLATES_DIR", str(folder))
    monkeypatch.setenv("BILLBRIDGE_SMTP__HOST", "127.0.0.1")
    for run in (send_reminders.fn, quote_to_cash.fn):  # the flows' bodies: refused before any step runs
        with pytest.raises(TemplateProblem, match=rf"^{re.escape(str(path))}, line 1: unexpected '}}'"):
            run()
