"""Query parameters read only as documented: ``limit=1_000``, ``limit= 5`` or ``to=0`` (a Unix
time to pydantic) are refused, not guessed at, and so are parameters an operation does not have."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BeforeValidator

from billbridge.api.errors import refuse


def written_as(pattern: str, what: str) -> BeforeValidator:
    """A validator that lets a query value through only if it is text matching ``pattern`` whole;
    otherwise the 422 says it must be ``what``."""
    compiled = re.compile(pattern)

    def check(value: Any) -> Any:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return BeforeValidator(check)


DIGITS = written_as(r"[0-9]+", "written in digits 0-9")
IsoDate = Annotated[date, written_as(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "a date written YYYY-MM-DD")]


def refuse_unknown_parameters(request: Request, declared: Mapping[str, bool] | None = None) -> None:
    """422 for a query parameter the operation does not declare (a misspelt filter,
    ``?customer=globex``, would otherwise be ignored, and the answer look right), or for a single
    one given more than once (only the last would count). ``declared``: name -> takes a list."""
    if not request.scope.get("query_string"):
        return
    declared = declared or {}
    for name in request.query_params:
        if name not in declared:
            raise refuse(422, "unknown_parameter", f"{name!r} is not a query parameter of this operation", name)
        if not declared[name] and len(request.query_params.getlist(name)) > 1:
            raise refuse(422, "repeated_parameter", f"{name!r} is given more than once", name)


async def declared_parameters_only(request: Request) -> None:
    """The application's dependency: :func:`refuse_unknown_parameters` with the route's own parameters.
    Pages outside the OpenAPI document (the dashboard's HTML) read their own query and are left alone."""
    if request.scope.get("query_string"):
        route = request.scope.get("route")
        if isinstance(route, APIRoute) and not route.include_in_schema:
            return
        refuse_unknown_parameters(request, _declared(route) if isinstance(route, APIRoute) else None)


def _declared(route: APIRoute) -> dict[str, bool]:
    """The query parameters of the route and of its dependencies (what its OpenAPI operation lists),
    each with whether it takes a list."""
    names: dict[str, bool] = {}
    dependants = [route.dependant]
    while dependants:
        dependant = dependants.pop()
        names.update((field.alias, _takes_a_list(field.field_info.annotation)) for field in dependant.query_params)
        dependants.extend(dependant.dependencies)
    return names


def _takes_a_list(annotation: Any) -> bool:
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return any((get_origin(option) or option) in (list, set, tuple, frozenset) for option in options)
