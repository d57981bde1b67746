"""The documentation matches the code: docs/models.md and README.md's "Model zoo" table are
generated from the current registry, docs/zoo.yaml, the READMEs and the networks (parameter
counts), docs/api.md lists every route, docs/legacy.md every legacy route and table column."""
from __future__ import annotations

import json
import re

from serve_app.docs import (MODELS_MD, README_MD, REPO, ZOO_BEGIN, ZOO_END, count_parameters, load_zoo_facts, main,
                            network_parameters, readme_path, render_models, render_zoo_table, update_readme,
                            variant_networks)


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


def test_readme_zoo_table_is_up_to_date():
    readme = README_MD.read_text(encoding="utf-8")
    assert readme.count(ZOO_BEGIN) == 1 and readme.count(ZOO_END) == 1
    assert readme == update_readme(readme, render_zoo_table()), (
        "README.md's Model zoo table is out of date: run `python -m serve_app.docs`")
    table = readme.split(ZOO_BEGIN)[1].split(ZOO_END)[0]
    header = next(line for line in table.splitlines() if line.startswith("| algorithm"))
    for column in ["paper", "params (M)", "published PSNR", "released weights", "conformance", "measured here"]:
        assert column in header
    # a hand edit of a generated row is caught
    stale = readme.replace("| 19.66 dB |", "| 19.70 dB |")
    assert stale != readme and stale != update_readme(stale, render_zoo_table())


def test_zoo_facts_cover_every_algorithm_and_quote_only_readme_numbers():
    """docs/zoo.yaml has one entry per registry algorithm; every published or measured number in
    it is also in that algorithm's README, which says where it comes from."""
    from algorithms.registry import load_registry

    zoo = load_zoo_facts()
    entries = load_registry().algorithms
    assert sorted(zoo) == sorted(a.name for a in entries)
    for entry in entries:
        facts = zoo[entry.name]
        assert facts.get("weights") and facts.get("conformance"), entry.name
        readme = readme_path(entry)
        text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
        for key in ("published", "measured"):
            for number in re.findall(r"\d+\.\d+", str(facts.get(key) or "")):
                assert number in text, f"{entry.name}: {key} {number} is not in {readme.relative_to(REPO)}"


def test_generated_docs_have_no_unverified_numbers_or_broken_tables():
    text = render_models()
    for phrase in ("recalled", "verify before quoting", "check there before quoting"):
        assert phrase not in text.lower(), phrase
    # a section title followed by a table on the same line renders as one broken row
    assert not re.search(r"^\*[^*\n]+:\* \|", text, re.M)
    for name in ("DCP", "CAP", "BCCR"):
        section = text.split(f"\n## {name}\n")[1].split("\n## ")[0]
        assert "README | none" not in section and "Measured here" in section


def test_parameter_counts(shared_dir):
    """Every network variant has a parameter count; where the conformance spec records the
    official count, our network built on the meta device has exactly that many parameters."""
    import json

    from algorithms.registry import load_registry

    seen: set[str] = set()
    for entry in load_registry().algorithms:
        for variant in entry.variants:
            counts = network_parameters(entry, variant)
            assert bool(counts) == bool(variant.path), (entry.name, variant.name, counts)
            for label, arch, build in variant_networks(entry, variant):
                spec = shared_dir / "conformance" / str(arch) / "spec.json"
                if arch and spec.is_file() and arch not in seen:
                    seen.add(arch)
                    assert count_parameters(build) == json.loads(spec.read_text())["num_params"], arch
    assert len(seen) >= 40
    text = render_models()
    assert "| 2,517,612 |" in text.split("\n## DehazeFormer\n")[1].split("\n## ")[0]  # dehazeformer-b


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
