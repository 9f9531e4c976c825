"""Layering rules of DESIGN.md section 3, checked on the source."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ["framework", "graph_kernel", "dvm_runtime", "polyhedral", "kernel_agent", "onnx_models"]
TOP = set(RUNTIME) | {"benchmarks", "tests", "examples"}
ORACLES = ("onnxruntime", "onnx.reference", "torch")


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                pkg = path.relative_to(ROOT).parent.parts[: len(path.relative_to(ROOT).parent.parts) - node.level + 1]
                yield ".".join(pkg + ((node.module,) if node.module else ())), node.lineno
            else:
                yield node.module or "", node.lineno
                for a in node.names:
                    yield f"{node.module}.{a.name}", node.lineno


def _files(package):
    return sorted((ROOT / package).rglob("*.py"))


def test_no_oracle_in_runtime_path():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for pkg in RUNTIME for p in _files(pkg)
           for name, line in _imports(p) if any(name == o or name.startswith(o + ".") for o in ORACLES)]
    assert not bad, "\n".join(bad)


def test_ir_and_ops_import_no_other_top_level_package():
    files = [ROOT / "framework" / "ir.py", *_files("framework/ops")]
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in files for name, line in _imports(p)
           if name.split(".")[0] in TOP - {"framework"}]
    assert not bad, "\n".join(bad)


def test_only_lazy_imports_of_backend_packages_in_framework():
    """framework may name graph_kernel/dvm_runtime/polyhedral/kernel_agent only inside functions."""
    backends = {"graph_kernel", "dvm_runtime", "polyhedral", "kernel_agent"}
    bad = []
    for p in _files("framework"):
        tree = ast.parse(p.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            bad += [f"{p.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in backends]
    assert not bad, "\n".join(bad)
