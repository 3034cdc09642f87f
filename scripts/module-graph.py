#!/usr/bin/env python3
"""The package's module graph, from Package.swift (`swift package dump-package`).

    scripts/module-graph.py            prints the graph as a mermaid block
    scripts/module-graph.py --check    fails unless README.md holds that block between the
                                       module-graph markers, and its layout table names every
                                       non-test target's folder

The graph is the transitive reduction of the declared dependencies (an edge a -> c is left out
when a -> b -> ... -> c exists), so it shows the layers; reachability is exactly Package.swift's.
Test targets and external products (ArgumentParser) are left out.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- module-graph: begin (scripts/module-graph.py) -->", "<!-- module-graph: end -->"


def targets():
    out = subprocess.run(["swift", "package", "dump-package"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    package = json.loads(out)
    result = {}
    for t in package["targets"]:
        if t["type"] == "test" or t["name"] == "CNXTestSupport":
            continue
        deps = [d["byName"][0] for d in t["dependencies"] if "byName" in d]
        path = t.get("path") or f"Sources/{t['name']}"
        result[t["name"]] = (deps, path)
    return result


def reduction(graph):
    def reach(start, skip_edge):
        seen, stack = set(), [d for d in graph[start] if d != skip_edge]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            stack.extend(graph.get(n, []))
        return seen
    return {a: sorted(b for b in deps if b not in reach(a, b)) for a, deps in graph.items()}


def mermaid(all_targets):
    graph = {name: [d for d in deps if d in all_targets] for name, (deps, _) in all_targets.items()}
    reduced = reduction(graph)
    ident = lambda n: re.sub(r"[^A-Za-z0-9]", "_", n)
    lines = ["```mermaid", "graph TD"]
    linked = {a for a in reduced if reduced[a]} | {b for deps in reduced.values() for b in deps}
    for a in sorted(reduced):
        if a not in linked:
            lines.append(f"  {ident(a)}[{a}]")
        for b in reduced[a]:
            lines.append(f"  {ident(a)}[{a}] --> {ident(b)}[{b}]")
    lines.append("```")
    return "\n".join(lines)


def main():
    all_targets = targets()
    block = mermaid(all_targets)
    if "--check" not in sys.argv:
        print(block)
        return 0
    readme = (ROOT / "README.md").read_text()
    status = 0
    m = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), readme, re.S)
    if not m:
        print("module-graph: README.md has no module-graph block", file=sys.stderr)
        status = 1
    elif m.group(1).strip() != block.strip():
        print("module-graph: README.md's module graph differs from Package.swift; regenerate with "
              "scripts/module-graph.py", file=sys.stderr)
        status = 1
    layout = readme[readme.find("## Layout"):]
    for name, (_, path) in sorted(all_targets.items()):
        if f"`{path.rstrip('/')}`" not in layout:
            print(f"module-graph: README.md's layout table does not list {name} (`{path}`)", file=sys.stderr)
            status = 1
    if status == 0:
        print(f"module-graph: README.md matches Package.swift ({len(all_targets)} targets)")
    return status


if __name__ == "__main__":
    sys.exit(main())
