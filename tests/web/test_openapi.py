"""The OpenAPI document: generated from the handlers' models, committed, and complete."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from supervisor.web.openapi import ROUTES, openapi_document, openapi_text
from supervisor.web.rest import create_rest_app

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_openapi_json_matches_the_code() -> None:
    committed = (ROOT / "openapi.json").read_text()
    assert committed == openapi_text(), "run: mcp-v8 --print-openapi > openapi.json"


def test_the_document_is_valid_openapi() -> None:
    validate(openapi_document())


class _Stub:
    """Just enough of the services to build the app and read its routes."""

    def __init__(self) -> None:
        from supervisor.config import HttpSettings

        self.settings = type("S", (), {"http": HttpSettings()})()
        self.engine = None


def test_the_app_serves_exactly_the_documented_api_routes() -> None:
    app = create_rest_app(_Stub())  # type: ignore[arg-type]
    served: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if not path.startswith("/api/"):
            continue
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                served.add((method.lower(), path))
    documented = {(r.method, r.path) for r in ROUTES}
    assert served == documented


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_operation_documents_its_response_and_errors(route: Any) -> None:
    operation = openapi_document()["paths"][route.path][route.method]
    assert set(operation["responses"]) == {"200", "default"}
