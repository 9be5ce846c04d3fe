"""Import-graph check of ``make lint``: no module circles, and the core imports no front end.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a circle a
type checker sees is still a circle a reader has to follow. Every module beside the core must
be one of the FRONTS, so that a new front module cannot escape the check. Exit status 1 lists
each circle (its modules), each forbidden import with its line and each module not placed.
"""

from __future__ import annotations

import sys

import grimp

PACKAGE = "c2s_desktop"
CORE = f"{PACKAGE}.core"
FRONTS = (
    f"{PACKAGE}.gui",
    f"{PACKAGE}.cli",
    f"{PACKAGE}.cli_common",
    f"{PACKAGE}.cli_tasks",
    f"{PACKAGE}.cli_prepare",
    f"{PACKAGE}.cli_finetune",
)


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def forbidden(graph: grimp.ImportGraph) -> list[str]:
    """``importer:line -> imported`` for each import of a front end by the core."""
    lines = []
    for importer in sorted(m for m in graph.modules if m == CORE or m.startswith(CORE + ".")):
        for target in sorted(graph.find_modules_directly_imported_by(importer)):
            if any(target == f or target.startswith(f + ".") for f in FRONTS):
                for d in graph.get_import_details(importer=importer, imported=target):
                    lines.append(f"{importer}:{d['line_number']} -> {target}")
    return lines


def unplaced(graph: grimp.ImportGraph) -> list[str]:
    """The modules right under the package that are neither the core nor named in FRONTS (a
    new front module must be named there, or the check above would let the core import it)."""
    top = (m for m in graph.modules if m.count(".") == 1)
    return sorted(m for m in top if m != CORE and m not in FRONTS)


def main() -> int:
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    problems = [f"neither the core nor a front end listed in FRONTS: {m}" for m in unplaced(graph)]
    for component in circles(graph):
        members = ", ".join(m.removeprefix(PACKAGE + ".") for m in component)
        problems.append(f"import circle of {len(component)} modules: {members}")
    problems += [f"the core imports a front end: {line}" for line in forbidden(graph)]
    for line in problems:
        print(line)
    print(f"import graph: {len(graph.modules)} modules, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
