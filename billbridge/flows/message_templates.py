"""Message templates as files: an installation's own wording per legal entity and language, over the
English defaults of ``mapping.messages``.

Layout of ``message_templates_dir`` (settings)::

    <dir>/<entity_ref>/<language>/<kind>.subject   the subject line (Jinja2)
    <dir>/<entity_ref>/<language>/<kind>.txt       the plain-text body
    <dir>/<entity_ref>/<language>/<kind>.html      the HTML body (default: the text in a page)
    <dir>/default/<language>/...                   for every entity without its own

``kind`` is invoice, reminder, receipt, dunning, statement or partner_statement. A message for entity E in language
``fr-CH`` looks in E/fr-CH, E/fr, default/fr-CH, default/fr, then E/en, default/en, then the
built-in English; each file on its own (a directory may hold only a subject). Every file is checked
when a run starts (:meth:`TemplateDir.check`): a syntax error, an unknown filter, a variable no
message has, or a file name that is not a template are refused naming the file and line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import BaseLoader, Environment, FileSystemLoader, TemplateNotFound

from billbridge.billing.messaging import DEFAULT_LANGUAGE
from billbridge.mapping import messages as render

DEFAULT_DIR = "default"
SUFFIXES = {"subject": "subject", "txt": "text", "html": "html"}  # file suffix -> template part


class _Files(FileSystemLoader):
    """A FileSystemLoader that maps the template names of ``mapping.messages`` (``invoice.text``) to
    the file names of the layout (``invoice.txt``)."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        if template == "html":  # the shared HTML default lives only in the built-in templates
            raise TemplateNotFound(template)
        name = template[: -len(".text")] + ".txt" if template.endswith(".text") else template
        return super().get_source(environment, name)


def search_path(entity_ref: str, language: str) -> list[str]:
    """The folders a message of ``entity_ref`` in ``language`` takes its templates from, first first."""
    languages = [language]
    base = language.replace("_", "-").split("-")[0]
    if base != language:
        languages.append(base)
    order = [f"{owner}/{lang}" for lang in languages for owner in (entity_ref, DEFAULT_DIR)]
    order += [f"{entity_ref}/{DEFAULT_LANGUAGE}", f"{DEFAULT_DIR}/{DEFAULT_LANGUAGE}"]
    return list(dict.fromkeys(order))


@dataclass
class TemplateDir:
    """An installation's template files, with an environment per (entity, language, currency)."""

    root: Path
    _environments: dict[tuple[str, str, str], Environment] = field(default_factory=dict)

    def loader(self, entity_ref: str, language: str) -> BaseLoader:
        return _Files([str(self.root / folder) for folder in search_path(entity_ref, language)])

    def environment(self, entity_ref: str, language: str, currency: str) -> Environment:
        key = (entity_ref, language, currency)
        found = self._environments.get(key)
        if found is None:
            found = self._environments[key] = render.environment(
                language, currency, loader=self.loader(entity_ref, language)
            )
        return found

    def check(self) -> int:
        """Refuse the first broken file, naming it and its line (TemplateProblem); returns how many
        files were checked."""
        if not self.root.is_dir():
            raise render.TemplateProblem(f"{self.root}: the message templates folder does not exist")
        checked = 0
        for path in sorted(self.root.rglob("*")):
            if path.is_dir():
                continue
            relative = path.relative_to(self.root)
            kind, _, suffix = path.name.partition(".")
            if len(relative.parts) != 3 or kind not in render.KINDS or suffix not in SUFFIXES:
                raise render.TemplateProblem(
                    f"{path}: not a message template (expected <entity_ref or default>/<language>/<kind>.subject, "
                    f".txt or .html, kind one of {', '.join(render.KINDS)})"
                )
            try:
                source = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise render.TemplateProblem(f"{path}: not UTF-8 text ({exc.reason})") from None
            render.check_source(f"{kind}.{SUFFIXES[suffix]}", source, str(path))
            checked += 1
        return checked


def template_dir(root: Path | None) -> TemplateDir | None:
    """The configured template files, checked (raises TemplateProblem naming a broken file and line);
    None when none are configured (the built-in English templates serve)."""
    if root is None:
        return None
    found = TemplateDir(root)
    found.check()
    return found
