"""Generate docs/models.md and the "Model zoo" table of README.md from the registry
(configs/models.yaml), the per-algorithm summary facts (docs/zoo.yaml), each algorithm's README
and the networks' code.

    python -m serve_app.docs            # rewrite docs/models.md and README.md's zoo table
    python -m serve_app.docs --check    # exit 1 if either is out of date

Per algorithm: kind, description, paper, legacy modelIds, importPath, licence, official code,
parameter counts, the summary facts of docs/zoo.yaml (headline published number, source of the
weights, conformance, numbers measured here), the variants (kind, description, weights file =
legacy ``trained_model/`` path, legacy id, settings, parameter count) and, from the README, the
weights source and the published numbers. README facts are taken from its sections:
``## Heading`` blocks and ``**Heading.**`` paragraphs; the licence is every sentence that
mentions one. Parameter counts are the official implementation's (``num_params`` of the
conformance spec) where the variant's network has a spec, otherwise counted from our network
built on PyTorch's meta device (no memory, no weights); for networks with a spec the two agree.
The output depends only on those inputs (no dates, no machine facts). tests/test_docs.py checks
that both files are current.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import yaml

from algorithms.registry import AlgorithmEntry, Registry, VariantEntry, load_registry

REPO = Path(__file__).resolve().parents[1]
MODELS_MD = REPO / "docs" / "models.md"
README_MD = REPO / "README.md"
ZOO_YAML = REPO / "docs" / "zoo.yaml"
ZOO_BEGIN, ZOO_END = "<!-- zoo-table:begin -->", "<!-- zoo-table:end -->"
ZOO_FIELDS = {"published", "weights", "conformance", "measured", "paper"}
#: what the "measured here" numbers are (docs/zoo.yaml)
MEASURED_ON = "mean PSNR on the 100 SOTS-indoor images of `../shared/data/sots-indoor`; hazy input 13.69 dB"
_BOLD_HEAD = re.compile(r"^\*\*([A-Z][^*]{0,60}?)\.\*\*\s*(.*)$")


def readme_path(entry: AlgorithmEntry) -> Path:
    module = entry.importPath.split(":")[0]
    return REPO.joinpath(*module.split(".")) / "README.md"


def readme_sections(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(intro, [(title, body)]) split at ``## Title`` lines and ``**Title.**`` paragraphs."""
    intro: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# "):
            continue
        bold = _BOLD_HEAD.match(line)
        if line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif bold:
            sections.append((bold.group(1).strip(), [bold.group(2)]))
        elif sections:
            sections[-1][1].append(line)
        else:
            intro.append(line)
    return "\n".join(intro).strip(), [(t, "\n".join(b).strip()) for t, b in sections]


def _sentences(text: str) -> list[str]:
    """Sentences of a Markdown text; list items are separate."""
    out = []
    for item in re.split(r"\n\s*(?:- |\n)", "\n" + text):
        flat = re.sub(r"\s*\n\s*", " ", item).strip()
        out += [s.strip() for s in re.split(r"(?<=[.;])\s+(?=[A-Z(`*<\"])", flat) if s.strip()]
    return out


def _clauses(sentence: str) -> list[str]:
    """Split at , and ; outside parentheses and backquotes."""
    parts, depth, tick, cur = [], 0, False, ""
    for ch in sentence:
        if ch == "`":
            tick = not tick
        elif not tick and ch in "([":
            depth += 1
        elif not tick and ch in ")]":
            depth = max(0, depth - 1)
        if ch in ",;" and depth == 0 and not tick:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in parts + [cur] if p.strip()]


def _licence_phrases(text: str) -> str:
    found = []
    for sentence in _sentences(text):
        if not re.search(r"licen[cs]e", sentence, re.I):
            continue
        clauses = [c for c in _clauses(sentence) if re.search(r"licen[cs]e", c, re.I)]
        found += [c.rstrip(".") for c in clauses] or [sentence]
    return "; ".join(dict.fromkeys(found))


def readme_facts(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    intro, sections = readme_sections(path.read_text(encoding="utf-8"))
    everything = "\n\n".join([intro] + [f"{t}.\n{b}" for t, b in sections])
    facts: dict[str, str] = {}
    licence = next((b for t, b in sections if t.lower().startswith("licen")), None)
    if licence is None:
        licence = _licence_phrases(everything)
    facts["licence"] = re.sub(r"\s*\n\s*", " ", licence).strip()
    code = next((b for t, b in sections if t.lower().startswith("official code")), None)
    if code is None:
        code = next((s for s in _sentences(everything)
                     if re.search(r"github\.com|Official (code|repository)", s)), "")
    code = re.sub(r"\s*\n\s*", " ", code).strip()
    facts["code"] = re.sub(r"^Official (code|repository)\s*:?\s*", "", code)
    weights = [b for t, b in sections if re.search(r"weights", t, re.I)]
    facts["weights"] = "\n\n".join(weights).strip()
    numbers = [(t, b) for t, b in sections if re.search(r"published|numbers|quality", t, re.I)]
    facts["numbers"] = "\n\n".join(
        (_titled(t, b) if not t.lower().startswith(("numbers", "published results", "published numbers"))
         or "(" in t else b) for t, b in numbers
    ).strip()
    return facts


def _titled(title: str, body: str) -> str:
    """``*Title:* body``; a body that starts with a block (table, list, code) goes below the title,
    or Markdown would read the title as the table's first cell."""
    if re.match(r"\s*(\||- |\* |```|\d+\. )", body):
        return f"*{title}:*\n\n{body}"
    return f"*{title}:* {body}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") if text not in (None, "") else "-"


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) if params else "-"


def _ids(entry_like) -> str:
    ids = ([entry_like.id] if entry_like.id is not None else []) + list(entry_like.legacyIds)
    return ", ".join(str(i) for i in ids) if ids else "-"


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", name.lower()).replace(" ", "-")


# -- parameter counts ---------------------------------------------------------------------------
#: networks a variant runs besides its registry ``arch`` (its factory builds and loads them too)
COMPANION_NETWORKS: dict[str, tuple[tuple[str, str], ...]] = {"madn": (("madn-meta", "madn-meta"),)}
#: algorithms without a NETWORKS/ARCHS table: module attributes building what the factory builds
EXTRA_BUILDERS: dict[str, tuple[tuple[str, str], ...]] = {
    "algorithms.daclip": (("image encoder", "build_encoder"), ("U-Net", "build_unet")),
}


def _conformance_dir() -> Path:
    return Path(os.environ.get("DEHAZE_SHARED", REPO.parent / "shared")) / "conformance"


@lru_cache(maxsize=None)
def spec_num_params(arch: str) -> int | None:
    """``num_params`` of the conformance spec of ``arch`` (the official implementation's count)."""
    spec = _conformance_dir() / arch / "spec.json"
    if not spec.is_file():
        return None
    value = json.loads(spec.read_text(encoding="utf-8")).get("num_params")
    return value if isinstance(value, int) else None


def count_parameters(build: Callable[[], Any]) -> int:
    """Parameters of the network ``build()`` makes (shared ones once), built on the meta device:
    no memory and no initialisation, so even the largest networks cost a fraction of a second."""
    import torch

    try:
        with torch.device("meta"):
            net = build()
    except Exception:  # a constructor that needs real tensor values
        net = build()
    return sum(p.numel() for p in net.parameters())


def variant_networks(entry: AlgorithmEntry, variant: VariantEntry) -> list[tuple[str, str | None, Callable]]:
    """(label, conformance variant id or None, constructor) of every network the variant runs."""
    module = importlib.import_module(entry.importPath.split(":")[0])
    nets = getattr(module, "NETWORKS", None) or getattr(getattr(module, "factory", None), "networks", None) or {}
    archs = getattr(module, "ARCHS", None) or {}
    arch = variant.arch
    if arch and arch in nets:
        return [(arch, arch, nets[arch].build)] + [
            (label, other, nets[other].build) for label, other in COMPANION_NETWORKS.get(arch, ())]
    if arch and arch in archs:
        return [(arch, arch, archs[arch])]
    return [(label, None, getattr(module, attr)) for label, attr in EXTRA_BUILDERS.get(module.__name__, ())]


_BUILT_COUNTS: dict[tuple[str, str], int] = {}


def network_parameters(entry: AlgorithmEntry, variant: VariantEntry) -> list[tuple[str, int]]:
    """(label, parameter count) per network of the variant; [] for a classical algorithm."""
    out = []
    for label, arch, build in variant_networks(entry, variant):
        n = spec_num_params(arch) if arch else None
        if n is None:
            key = (entry.importPath, label)
            if key not in _BUILT_COUNTS:
                _BUILT_COUNTS[key] = count_parameters(build)
            n = _BUILT_COUNTS[key]
        out.append((label, n))
    return out


def _params_cell(counts: list[tuple[str, int]]) -> str:
    if not counts:
        return "-"
    total = sum(n for _, n in counts)
    if len(counts) == 1:
        return f"{total:,}"
    return f"{total:,} (" + " + ".join(f"{label} {n:,}" for label, n in counts) + ")"


def _millions(n: int) -> str:
    m = n / 1e6
    return f"{m:.0f}" if m >= 100 else f"{m:.1f}" if m >= 10 else f"{m:.2f}" if m >= 1 else f"{m:.3g}"


def params_range(entry: AlgorithmEntry, millions: bool = True) -> str:
    """Parameter count of the algorithm's variants: one value, or smallest-largest."""
    totals = sorted({sum(n for _, n in network_parameters(entry, v)) for v in entry.variants} - {0})
    if not totals:
        return "-"
    fmt = _millions if millions else (lambda n: f"{n:,}")
    return fmt(totals[0]) if len(totals) == 1 else f"{fmt(totals[0])}–{fmt(totals[-1])}"


# -- summary facts (docs/zoo.yaml) --------------------------------------------------------------
def load_zoo_facts(path: Path = ZOO_YAML) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of algorithm name -> facts")
    for name, facts in data.items():
        unknown = set(facts or {}) - ZOO_FIELDS
        if unknown:
            raise ValueError(f"{path}: {name}: unknown fields {sorted(unknown)}")
    return data


def short_paper(entry: AlgorithmEntry, facts: dict[str, Any]) -> str:
    """"First author et al., venue" from the registry's ``paper`` ("Authors. Title. Venue")."""
    if facts.get("paper"):
        return str(facts["paper"])
    parts = [p.strip() for p in re.split(r"\.\s+", entry.paper or "") if p.strip()]
    if len(parts) < 3:
        return entry.paper or "-"
    authors = [a.strip() for a in parts[0].split(",") if a.strip()]
    venue = re.sub(r",\s*arXiv:\S+$", "", parts[-1].rstrip("."))
    who = (authors[0] if len(authors) == 1 else f"{authors[0]} & {authors[1]}" if len(authors) == 2
           else f"{authors[0]} et al.")
    return f"{who}, {venue}"


def render_zoo_table(registry: Registry | None = None, zoo: dict[str, dict[str, Any]] | None = None) -> str:
    """The README's "Model zoo" table (between the zoo-table markers)."""
    reg = registry or load_registry()
    zoo = load_zoo_facts() if zoo is None else zoo
    out = [
        "<!-- generated by `python -m serve_app.docs` from configs/models.yaml, docs/zoo.yaml and the "
        "networks' code; edit those, not this table (tests/test_docs.py checks it is current) -->",
        "",
        "| algorithm | paper | params (M) | published PSNR (test set) | released weights | variants | conformance "
        "| measured here (100 SOTS-indoor images, hazy input 13.69 dB) |",
        "|---|---|---:|---|---|---:|---|---|",
    ]
    for a in reg.algorithms:
        f = zoo.get(a.name) or {}
        out.append(
            f"| [{a.name}](docs/models.md#{_anchor(a.name)}) | {_cell(short_paper(a, f))} | {params_range(a)} | "
            f"{_cell(f.get('published'))} | {_cell(f.get('weights'))} | {len(a.variants)} | "
            f"{_cell(f.get('conformance'))} | {_cell(f.get('measured'))} |")
    return "\n".join(out) + "\n"


def update_readme(text: str, table: str) -> str:
    """README text with the block between the zoo-table markers replaced by ``table``."""
    start, end = text.find(ZOO_BEGIN), text.find(ZOO_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md needs the markers {ZOO_BEGIN} ... {ZOO_END} around the zoo table")
    return text[:start + len(ZOO_BEGIN)] + "\n" + table + "\n" + text[end:]


def render_models(registry: Registry | None = None, zoo: dict[str, dict[str, Any]] | None = None) -> str:
    reg = registry or load_registry()
    zoo = load_zoo_facts() if zoo is None else zoo
    out = [
        "# Model zoo",
        "",
        "<!-- GENERATED by `python -m serve_app.docs` from configs/models.yaml, docs/zoo.yaml, algorithms/*/README.md"
        " and the networks' code; do not edit by hand (tests/test_docs.py checks it is current). -->",
        "",
        f"{len(reg.algorithms)} algorithms, {sum(len(a.variants) for a in reg.algorithms)} variants. A variant is one "
        "released checkpoint; its weights file is given relative to the weights root (`DEHAZE_WEIGHTS_ROOT`), laid "
        "out like the legacy `trained_model/` folder, so the path is also the legacy path. Variants whose file is "
        "absent are listed by `GET /v1/models` as unavailable, with the reason. Legacy modelIds are the `id` "
        "column of the legacy `sys_algorithm` table (see [legacy.md](legacy.md)). Published numbers are quoted "
        f"from each README, which says how they were obtained; numbers measured here are the {MEASURED_ON}.",
        "",
        "Parameter counts are those of the network(s) a variant runs: the official implementation's count "
        "(`num_params` of its conformance spec in `../shared/conformance`) where there is a spec, otherwise "
        "counted from our network built on PyTorch's meta device (no weights); both agree wherever there is a "
        "spec (tests/test_docs.py). Settings are the variant's registry `params`.",
        "",
        "| algorithm | kind | variants | params (M) | weights | legacy modelIds | licence |",
        "|---|---|---:|---:|---|---|---|",
    ]
    facts_by_name = {}
    for a in reg.algorithms:
        facts = readme_facts(readme_path(a))
        facts_by_name[a.name] = facts
        needs = "none (classical)" if all(v.path is None for v in a.variants) else "checkpoint per variant"
        all_ids = ", ".join(x for x in [_ids(a)] + [_ids(v) for v in a.children] if x != "-") or "-"
        licence = facts.get("licence") or ("implemented here from the paper (project licence)" if needs.startswith(
            "none") else "see README")
        short = licence if len(licence) <= 70 else licence[:67].rsplit(" ", 1)[0] + "…"
        out.append(f"| [{a.name}](#{_anchor(a.name)}) | {a.type} | {len(a.variants)} | {params_range(a)} | {needs} | "
                   f"{all_ids} | {_cell(short)} |")
    for a in reg.algorithms:
        facts = facts_by_name[a.name]
        summary = zoo.get(a.name) or {}
        readme = readme_path(a)
        out += ["", f"## {a.name}", "", f"*{a.type}* — {a.description}", ""]
        rows = [("Paper", a.paper or "-"), ("Registry", f"`importPath: {a.importPath}`"),
                ("Legacy modelId (algorithm row)", _ids(a))]
        if facts.get("code"):
            rows.append(("Official code", facts["code"]))
        if facts.get("licence"):
            rows.append(("Licence", facts["licence"]))
        elif all(v.path is None for v in a.variants):
            rows.append(("Licence", "implemented in this project from the paper (project licence); no weights"))
        rows.append(("README", f"[{readme.relative_to(REPO)}](../{readme.relative_to(REPO)})" if readme.is_file()
                     else "none (the registry entry and the code are the reference)"))
        rows.append(("Parameters", params_range(a, millions=False)))
        rows += [(label, summary.get(key)) for label, key in [
            ("Headline published number", "published"), ("Released weights", "weights"),
            ("Conformance", "conformance")]]
        if summary.get("measured"):
            rows.append(("Measured here", f"{summary['measured']}; {MEASURED_ON}"))
        out += ["| | |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in rows]
        out += ["", "| variant | kind | description | weights file (legacy path) | legacy modelId | settings | parameters |",
                "|---|---|---|---|---|---|---:|"]
        for v in a.variants:
            out.append(f"| {v.name} | {v.type} | {_cell(v.description)} | "
                       f"{f'`{v.path}`' if v.path else 'none'} | {_ids(v) if a.children else '-'} | "
                       f"{_cell(_params({**a.params, **v.params}))} | {_params_cell(network_parameters(a, v))} |")
        if facts.get("weights"):
            out += ["", "**Where to get the weights** (from the README)", "", _demote(facts["weights"])]
        if facts.get("numbers"):
            out += ["", "**Published and measured numbers** (from the README)", "", _demote(facts["numbers"])]
    return "\n".join(out).rstrip() + "\n"


def _demote(text: str) -> str:
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", text, flags=re.M)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve_app.docs", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/models.md or README.md's zoo table is out of date")
    p.add_argument("-o", "--output", default=str(MODELS_MD), help="where to write models.md")
    p.add_argument("--readme", default=str(README_MD), help="README whose zoo table to update")
    args = p.parse_args(argv)
    registry, zoo = load_registry(), load_zoo_facts()
    target, readme = Path(args.output), Path(args.readme)
    current_readme = readme.read_text(encoding="utf-8")
    wanted = {target: render_models(registry, zoo),
              readme: update_readme(current_readme, render_zoo_table(registry, zoo))}
    if args.check:
        stale = [path for path, text in wanted.items()
                 if (path.read_text(encoding="utf-8") if path.exists() else "") != text]
        for path in stale:
            print(f"{path} is out of date: run `python -m serve_app.docs`", file=sys.stderr)
        if not stale:
            print(f"{target} and the zoo table of {readme} are up to date")
        return 1 if stale else 0
    for path, text in wanted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        else:
            print(f"{path} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
