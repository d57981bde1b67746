"""The documentation matches the code: docs/models.md is generated from the current registry and
READMEs, docs/api.md lists every route, docs/legacy.md every legacy route and table column."""
from __future__ import annotations

import json
import re

from serve_app.docs import MODELS_MD, REPO, main, render_models


def test_models_md_is_up_to_date():
    assert MODELS_MD.read_text(encoding="utf-8") == render_models(), (
        "docs/models.md is out of date: run `python -m serve_app.docs`")
    assert main(["--check"]) == 0


def test_models_md_covers_every_variant():
    from algorithms.registry import load_registry

    text = render_models()
    for entry in load_registry().algorithms:
        assert f"\n## {entry.name}\n" in text
        for v in entry.variants:
            if v.path:
                assert f"`{v.path}`" in text, (entry.name, v.name)
    # facts from the READMEs: licence and published numbers of a network
    dehazeformer = text.split("\n## DehazeFormer\n")[1].split("\n## ")[0]
    assert "MIT licence" in dehazeformer and "35.15 / 0.989" in dehazeformer


def test_api_md_lists_every_route():
    from serve_app.ingress import api

    def walk(routes):  # serve.ingress wraps the class routes in an included router
        for route in routes:
            inner = getattr(route, "original_router", None) or getattr(route, "router", None)
            if inner is not None and hasattr(inner, "routes"):
                yield from walk(inner.routes)
            elif getattr(route, "methods", None):
                yield route

    doc = (REPO / "docs" / "api.md").read_text()
    checked = 0
    for route in walk(api.routes):
        path = re.sub(r"\{(\w+):path\}", r"{\1}", route.path)
        if path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"):
            continue
        for method in sorted(route.methods - {"HEAD"}):
            assert f"`{method} {path}`" in doc, f"{method} {path} missing from docs/api.md"
            checked += 1
    assert checked >= 10
    assert "/docs" in doc and "/openapi.json" in doc


def test_legacy_md_maps_routes_and_every_table_column(shared_dir):
    doc = (REPO / "docs" / "legacy.md").read_text()
    assert "`POST /model/prediction`" in doc and "`POST /model/evaluation`" in doc
    rows = json.loads((shared_dir / "legacy" / "sys_algorithm.json").read_text())
    for column in rows[0]:
        assert f"| `{column}`" in doc, f"legacy column {column} not mapped"


def test_readme_links_the_docs_and_the_screenshot():
    readme = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)\)", readme):
        assert (REPO / target).exists(), target
    shot = REPO / "docs" / "demo-page.png"
    assert "docs/demo-page.png" in readme and shot.stat().st_size < 300_000
    for doc in ["architecture.md", "models.md", "api.md", "legacy.md"]:
        assert f"docs/{doc}" in readme
