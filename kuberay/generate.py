"""Generate the RayService's ``serveConfigV2`` from configs/serve.yaml.

    python -m kuberay.generate            # rewrite kuberay/rayservice.yaml in place
    python -m kuberay.generate --check    # exit 1 when the manifest has drifted (CI, tests)
    python -m kuberay.generate --print    # print the generated serveConfigV2 only

configs/serve.yaml is the one source of the Serve application (deployments, fractional GPUs,
autoscaling, the GPU-utilisation policy). On KubeRay two things differ, applied here:

* ``args.profile: gpu`` - the cluster starts with no GPU workers (the GPU worker group scales
  from zero), so ``profile: auto`` would see no GPUs at build time and pick the CPU profile;
* ``http_options.host: 0.0.0.0`` / ``port: 8000`` - the Serve proxy must listen on the pod IP on
  the port the RayService's serve Service targets.

Only the ``serveConfigV2: |`` block of the manifest is rewritten (textually), so the rest of
kuberay/rayservice.yaml keeps its comments and layout.
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SERVE_CONFIG = REPO / "configs" / "serve.yaml"
RAYSERVICE = REPO / "kuberay" / "rayservice.yaml"
HEADER = "# GENERATED from configs/serve.yaml by `python -m kuberay.generate`: do not edit here.\n"
#: Serve config keys KubeRay's serveConfigV2 accepts (the ServeDeploySchema's top level)
TOP_LEVEL = ("proxy_location", "http_options", "grpc_options", "logging_config", "target_capacity",
             "applications")
_BLOCK = re.compile(r"^(?P<indent>[ \t]*)serveConfigV2:[ \t]*\|[-+]?[ \t]*$", re.MULTILINE)


def kuberay_serve_config(serve_config: dict) -> dict:
    """The Serve config for KubeRay: configs/serve.yaml with the cluster-specific overrides."""
    doc = copy.deepcopy(serve_config)
    unknown = sorted(set(doc) - set(TOP_LEVEL))
    if unknown:
        raise ValueError(f"configs/serve.yaml: keys KubeRay's serveConfigV2 does not accept: {unknown}")
    http = doc.setdefault("http_options", {})
    http["host"] = "0.0.0.0"
    http["port"] = 8000
    for app in doc.get("applications") or []:
        args = app.setdefault("args", {}) or {}
        args["profile"] = "gpu"
        app["args"] = args
    return doc


def render_serve_config(serve_config_path: Path = SERVE_CONFIG) -> str:
    """The serveConfigV2 text (YAML) generated from a Serve config file."""
    doc = kuberay_serve_config(yaml.safe_load(Path(serve_config_path).read_text()))
    return HEADER + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100)


def _block_span(manifest: str) -> tuple[int, int, str]:
    """(start, end, indent) of the lines of the serveConfigV2 block scalar's body."""
    m = _BLOCK.search(manifest)
    if not m:
        raise ValueError("no `serveConfigV2: |` block in the RayService manifest")
    indent = m.group("indent")
    start = m.end() + 1
    pos = start
    lines = manifest[start:].splitlines(keepends=True)
    for line in lines:
        body = line.rstrip("\r\n")
        if body.strip() and not (body.startswith(indent + " ") or body.startswith(indent + "\t")):
            break
        pos += len(line)
    # trailing blank lines belong to what follows
    block = manifest[start:pos]
    trimmed = block.rstrip("\n")
    return start, start + len(trimmed) + (1 if trimmed else 0), indent


def embed(manifest: str, serve_config_text: str) -> str:
    """The manifest with its serveConfigV2 block replaced by ``serve_config_text``."""
    start, end, indent = _block_span(manifest)
    pad = indent + "  "
    body = "".join(pad + line if line.strip() else "\n" for line in serve_config_text.splitlines(keepends=True))
    if not body.endswith("\n"):
        body += "\n"
    return manifest[:start] + body + manifest[end:]


def embedded_serve_config(manifest_path: Path = RAYSERVICE) -> str:
    """The serveConfigV2 string the manifest really carries (parsed as YAML, as KubeRay does)."""
    docs = [d for d in yaml.safe_load_all(Path(manifest_path).read_text()) if d]
    svc = next(d for d in docs if d.get("kind") == "RayService")
    return svc["spec"]["serveConfigV2"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kuberay.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--serve-config", type=Path, default=SERVE_CONFIG)
    p.add_argument("--manifest", type=Path, default=RAYSERVICE)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the manifest differs from the generated config")
    mode.add_argument("--print", action="store_true", help="print the generated serveConfigV2 and exit")
    args = p.parse_args(argv)

    text = render_serve_config(args.serve_config)
    if args.print:
        sys.stdout.write(text)
        return 0
    manifest = args.manifest.read_text()
    updated = embed(manifest, text)
    if args.check:
        if updated != manifest or embedded_serve_config(args.manifest) != text:
            print(f"{args.manifest}: serveConfigV2 differs from {args.serve_config}; run `python -m kuberay.generate`",
                  file=sys.stderr)
            return 1
        print(f"{args.manifest}: serveConfigV2 is up to date")
        return 0
    if updated != manifest:
        args.manifest.write_text(updated)
        print(f"{args.manifest}: serveConfigV2 regenerated from {args.serve_config}")
    else:
        print(f"{args.manifest}: already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
