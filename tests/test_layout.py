"""The package layout: imports go one way (the layers in pipeline/__init__.py) and no module imports itself back."""
import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parent.parent / "pipeline"
RANK = {"errors": 0, "cache": 0.5, "quiet": 0, "boards": 1, "buildfolder": 1, "target": 2, "model": 3, "firmware": 3, "report": 3, "build": 4, "hil": 5,
        "calibrate": 6, "explore": 7, "bench": 7, "compare": 7}


def module_name(path: Path) -> str:
    parts = path.relative_to(PIPELINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every pipeline module this file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if (PIPELINE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                          or (PIPELINE.parent / candidate.replace(".", "/")).is_dir() else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pipeline."))
    return found - {"pipeline"}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PIPELINE.rglob("*.py")}


def layer(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_module_has_a_layer():
    assert {layer(m) for m in graph() if m != "pipeline"} <= set(RANK)


def test_imports_go_down_the_layers():
    wrong = []
    for module, targets in graph().items():
        if module == "pipeline":
            continue
        for target in targets:
            a, b = layer(module), layer(target)
            if a != b and (RANK[b] > RANK[a] or (RANK[b] == RANK[a])):
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_no_import_circles():
    g = graph()
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in g.get(node, ()):
            if nxt not in g:
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(path + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in g:
        if node not in state:
            visit(node, [node])
