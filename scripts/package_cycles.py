#!/usr/bin/env python3
"""Prints the import cycles between vault's top-level packages, with the imports that close
them, and exits 1 if there is any. The layers contract (pyproject's [tool.importlinter])
already forbids them; this says where one comes from when it fails (issue 13).

    .venv/bin/python scripts/package_cycles.py [PACKAGE_DEPTH]
"""

from __future__ import annotations

import sys
from collections import defaultdict

import grimp


def main() -> int:
    depth = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    graph = grimp.build_graph("vault", cache_dir=None)

    def room(module: str) -> str:
        return ".".join(module.split(".")[:depth])

    edges: dict[str, set[str]] = defaultdict(set)
    why: dict[tuple[str, str], list[str]] = defaultdict(list)
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            source, target = room(importer), room(imported)
            if source != target and target.startswith("vault."):
                edges[source].add(target)
                why[source, target].append(f"{importer} -> {imported}")
    cycles = _strongly_connected(edges)
    for members in cycles:
        sys.stdout.write(f"cycle: {' '.join(sorted(members))}\n")
        for source in sorted(members):
            for target in sorted(edges[source] & members):
                imports = ", ".join(sorted(why[source, target])[:4])
                sys.stdout.write(f"  {source} -> {target}: {imports}\n")
    return 1 if cycles else 0


def _strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm; only the components of more than one package."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = set()
            while True:
                member = stack.pop()
                members.add(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(members)

    for node in sorted(set(edges) | {t for ts in edges.values() for t in ts}):
        if node not in index:
            visit(node)
    return found


if __name__ == "__main__":
    sys.exit(main())
