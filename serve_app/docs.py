"""Generate docs/models.md from the registry (configs/models.yaml) and each algorithm's README.

    python -m serve_app.docs            # rewrite docs/models.md
    python -m serve_app.docs --check    # exit 1 if docs/models.md is out of date

Per algorithm: kind, description, paper, legacy modelIds, importPath, licence, official code,
the variants (kind, description, weights file = legacy ``trained_model/`` path, legacy id,
parameters) and, from the README, the weights source and the published numbers. README facts
are taken from its sections: ``## Heading`` blocks and ``**Heading.**`` paragraphs; the
licence is every sentence that mentions one. tests/test_docs.py checks the file is current.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from algorithms.registry import AlgorithmEntry, Registry, load_registry

REPO = Path(__file__).resolve().parents[1]
MODELS_MD = REPO / "docs" / "models.md"
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
        (f"*{t}:* {b}" if not t.lower().startswith(("numbers", "published results", "published numbers"))
         or "(" in t else b) for t, b in numbers
    ).strip()
    return facts


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") if text not in (None, "") else "-"


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) if params else "-"


def _ids(entry_like) -> str:
    ids = ([entry_like.id] if entry_like.id is not None else []) + list(entry_like.legacyIds)
    return ", ".join(str(i) for i in ids) if ids else "-"


def render_models(registry: Registry | None = None) -> str:
    reg = registry or load_registry()
    out = [
        "# Model zoo",
        "",
        "<!-- GENERATED by `python -m serve_app.docs` from configs/models.yaml and algorithms/*/README.md;"
        " do not edit by hand (tests/test_docs.py checks it is current). -->",
        "",
        f"{len(reg.algorithms)} algorithms, {sum(len(a.variants) for a in reg.algorithms)} variants. A variant is one "
        "released checkpoint; its weights file is given relative to the weights root (`DEHAZE_WEIGHTS_ROOT`), laid "
        "out like the legacy `trained_model/` folder, so the path is also the legacy path. Variants whose file is "
        "absent are listed by `GET /v1/models` as unavailable, with the reason. Legacy modelIds are the `id` "
        "column of the legacy `sys_algorithm` table (see [legacy.md](legacy.md)). Published numbers are quoted "
        "from each README, which says how they were obtained.",
        "",
        "| algorithm | kind | variants | weights | legacy modelIds | licence |",
        "|---|---|---:|---|---|---|",
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
        anchor = re.sub(r"[^a-z0-9 -]", "", a.name.lower()).replace(" ", "-")
        out.append(f"| [{a.name}](#{anchor}) | {a.type} | {len(a.variants)} | {needs} | {all_ids} | {_cell(short)} |")
    for a in reg.algorithms:
        facts = facts_by_name[a.name]
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
        out += ["| | |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in rows]
        out += ["", "| variant | kind | description | weights file (legacy path) | legacy modelId | params |",
                "|---|---|---|---|---|---|"]
        for v in a.variants:
            out.append(f"| {v.name} | {v.type} | {_cell(v.description)} | "
                       f"{f'`{v.path}`' if v.path else 'none'} | {_ids(v) if a.children else '-'} | "
                       f"{_cell(_params({**a.params, **v.params}))} |")
        if facts.get("weights"):
            out += ["", "**Where to get the weights** (from the README)", "", _demote(facts["weights"])]
        if facts.get("numbers"):
            out += ["", "**Published numbers** (from the README)", "", _demote(facts["numbers"])]
    return "\n".join(out).rstrip() + "\n"


def _demote(text: str) -> str:
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", text, flags=re.M)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve_app.docs", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/models.md is out of date")
    p.add_argument("-o", "--output", default=str(MODELS_MD))
    args = p.parse_args(argv)
    text = render_models()
    target = Path(args.output)
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            print(f"{target} is out of date: run `python -m serve_app.docs`", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
