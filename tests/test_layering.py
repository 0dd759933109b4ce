"""The layering holds: each layer imports only what it may (every import counts, also the ones inside
functions and under TYPE_CHECKING).

    billing      pure money domain: nothing of store, connectors, mapping, flows, app, api, vendors
    mapping      pure translation: no connectors (nor store, flows, app, api, vendors)
    connectors   vendor payloads and HTTP: no mapping, billing, store, flows, app, api, vendors
    settings     a leaf: nothing of the domain
    secrets      a leaf (the installation's sealer): nothing of the domain
    records      a leaf shared by connectors and mapping: nothing of billbridge
    vendors      connectors joined with mapping: no store, flows, app, api
    flows        the wiring: no app, api (the command and the service call the flows, not back)
    api          the service: no app
    sandbox      imported only by the demo wiring (app/demo*.py) and tests

An exception may only be listed below when it cannot be avoided, and the list may only shrink.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "billbridge"
DOMAIN = ("billing", "store", "connectors", "mapping", "flows", "app", "api", "vendors", "sandbox")

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "billing": ("store", "connectors", "mapping", "flows", "app", "api", "vendors", "sandbox", "settings"),
    "mapping": ("connectors", "store", "flows", "app", "api", "vendors", "sandbox", "settings"),
    "connectors": ("mapping", "billing", "store", "flows", "app", "api", "vendors", "sandbox"),
    "settings": (*DOMAIN, "records"),
    "records": (*DOMAIN, "settings", "errors", "private_files", "redaction"),
    "vendors": ("store", "flows", "app", "api", "sandbox"),
    "secrets": (*DOMAIN, "records", "settings"),
    "flows": ("app", "api"),
    "api": ("app",),
}
SANDBOX_USERS = ("billbridge.app.demo", "billbridge.app.demo_serve")

# (importing module, imported module) pairs allowed against the rules above. It may only shrink.
KNOWN_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset({})


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every billbridge module ``path`` imports (``from x import y`` counts ``x``, and ``x.y`` when that
    is a module)."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if is_module(f"{base}.{alias.name}"))
    return {name for name in found if name == "billbridge" or name.startswith("billbridge.")}


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@cache  # the package is parsed once for all the tests here (they run in the fast tier)
def all_imports() -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_each_layer_imports_only_what_it_may() -> None:
    broken = sorted(
        (importer, imported)
        for importer, targets in all_imports().items()
        for imported in targets
        if layer(imported) in FORBIDDEN.get(layer(importer), ())
        and layer(imported) != layer(importer)
        and (importer, imported) not in KNOWN_EXCEPTIONS
    )
    assert not broken, "imports against the layering:\n" + "\n".join(f"  {a} -> {b}" for a, b in broken)


def test_only_the_demo_wiring_imports_the_sandbox() -> None:
    users = sorted(
        importer
        for importer, targets in all_imports().items()
        if layer(importer) != "sandbox" and importer not in SANDBOX_USERS
        for imported in targets
        if layer(imported) == "sandbox"
    )
    assert not users, f"production code importing the sandbox: {users}"


def test_known_exceptions_are_still_needed() -> None:
    """An exception that no longer occurs is taken off the list (it may only shrink)."""
    graph = all_imports()
    stale = sorted(pair for pair in KNOWN_EXCEPTIONS if pair[1] not in graph.get(pair[0], set()))
    assert not stale, f"exceptions no longer needed, remove them: {stale}"


def test_the_walker_sees_imports_inside_functions_and_type_checking(tmp_path: Path) -> None:
    """A worked example: the walk counts the imports a grep for top-level ones would miss."""
    source = PACKAGE / "vendors" / "registry.py"
    found = imports(source)
    assert "billbridge.connectors.salesforce" in found  # imported inside a builder function
    assert "billbridge.connectors.quickbooks.tokens" in found  # imported under TYPE_CHECKING
