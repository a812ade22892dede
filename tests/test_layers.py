"""The package's structure: the pipeline's layers, the lessons above them, no private imports.

Read from the source (every ``import``, at module level or inside a function),
not from what happens to be imported at run time.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skullstrip_lib"

# The pipeline's layers, bottom first: a module may import its own layer and the ones below.
LAYERS = (
    ("errors", "validate", "io", "metrics"),
    ("datasets", "synth", "preprocess", "workflow"),
    ("data", "model", "losses"),
    ("train",),
    ("bids", "inference", "evaluate"),
    ("viz",),
    ("cli",),
)
LESSONS = len(LAYERS)  # skullstrip_lib.lessons.* sits above every pipeline module
# Private helper modules every layer may use (shared docstring text; atomic writes, cache keys
# and settings as plain data, which io re-exports): below the first layer.
BASE = ("_docs", "_files", "_nipype")
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer} | dict.fromkeys(BASE, 0)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of a module of the package, e.g. ``skullstrip_lib.train`` -> 3."""
    parts = module.split(".")[1:]
    if not parts or parts[0] == "__main__":
        return LAYER_OF["cli"]
    if parts[0] == "lessons":
        return LESSONS
    return LAYER_OF[parts[0]]


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str, list[str]]]:
    """(line, imported package module, names taken from it) for every import of the package."""
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "skullstrip_lib":
                continue
            names = [a.name for a in node.names]
            # "from . import io" and "from .lessons import mri" name modules, not attributes.
            folder = root.joinpath(*target.split("."))
            submodules = [n for n in names if (folder / f"{n}.py").exists()]
            found += [(node.lineno, f"{target}.{n}", []) for n in submodules]
            rest = [n for n in names if n not in submodules]
            if rest:
                found.append((node.lineno, target, rest))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names
                      if a.name.split(".")[0] == "skullstrip_lib"]
    return found


def same_subpackage(this: str, target: str) -> bool:
    """Two modules of one subpackage (e.g. ``skullstrip_lib.synth.head`` and
    ``skullstrip_lib.synth.template``): one idea split in files, which share private names."""
    a, b = this.split("."), target.split(".")
    return len(a) >= 2 and len(b) >= 3 and a[:2] == b[:2] and a[1] != "lessons"


def private_module(module: str) -> bool:
    """A module that only its own subpackage may import, e.g. ``skullstrip_lib.datasets._archive``
    (the package-wide private modules of ``BASE`` excepted)."""
    return any(p.startswith("_") and not p.startswith("__") and p not in BASE
               for p in module.split(".")[1:])


def problems(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with one module's imports, one line each."""
    this, where = module_name(path, root), path.relative_to(root)
    found = []
    for line, target, names in imports(path, root):
        if target != "skullstrip_lib" and layer(target) > layer(this):
            found.append(f"{where}:{line}: {this} (layer {layer(this)}) imports {target} "
                         f"(layer {layer(target)}), against the data flow")
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        if private and target != this and not same_subpackage(this, target):
            found.append(f"{where}:{line}: imports the private {', '.join(private)} of {target}")
        if private_module(target) and not same_subpackage(this, target):
            found.append(f"{where}:{line}: imports {target}, a private module of another "
                         "subpackage")
    # module._name through an imported module, e.g. "from . import viz; viz._pyplot()"
    modules = {target.rpartition(".")[2] for _, target, names in imports(path, root)
               if not names and not same_subpackage(this, target)}
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"{where}:{node.lineno}: uses {node.value.id}.{node.attr}, a private "
                         "name of another module")
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in SOURCES:
        layer(module_name(path))  # a KeyError names a module the layer table does not know


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers_and_take_no_private_names(path):
    assert problems(path) == []


def test_the_checker_finds_each_kind_of_problem(tmp_path):
    pkg = tmp_path / "skullstrip_lib"
    (pkg / "lessons").mkdir(parents=True)
    for name in ("__init__", "viz", "train", "lessons/__init__", "lessons/mri"):
        (pkg / f"{name}.py").write_text("")
    (pkg / "metrics.py").write_text("def f():\n    from .train import fit\n")
    (pkg / "io.py").write_text("from .viz import _pyplot\n")
    (pkg / "datasets.py").write_text("from . import viz\nviz._png(None)\n")
    (pkg / "inference.py").write_text("from .lessons import mri\n")
    (pkg / "evaluate.py").write_text("from .io import load_scan\nfrom . import metrics\n")
    # A subpackage's modules share private names; other modules may not take them.
    (pkg / "synth").mkdir()
    (pkg / "synth" / "__init__.py").write_text("")
    (pkg / "synth" / "grid.py").write_text("def _rotation():\n    pass\n")
    (pkg / "synth" / "head.py").write_text("from .grid import _rotation\nfrom . import grid\n"
                                           "grid._rotation()\n")
    (pkg / "preprocess.py").write_text("from .synth.grid import _rotation\n")
    # A subpackage's private modules are its own: others import its public names.
    (pkg / "synth" / "_noise.py").write_text("def fields():\n    pass\n")
    (pkg / "synth" / "appearance.py").write_text("from ._noise import fields\n")
    (pkg / "workflow.py").write_text("from .synth._noise import fields\nfrom ._docs import x\n")
    assert [len(problems(pkg / f"{m}.py", tmp_path)) for m in
            ("metrics", "io", "datasets", "inference", "evaluate", "synth/head",
             "preprocess", "synth/appearance", "workflow")] == [1, 2, 2, 1, 0, 0, 1, 0, 1]
    assert "a private module of another subpackage" in problems(pkg / "workflow.py", tmp_path)[0]
    assert "against the data flow" in problems(pkg / "metrics.py", tmp_path)[0]
    assert "private _png" not in problems(pkg / "datasets.py", tmp_path)[1]
    assert "viz._png" in problems(pkg / "datasets.py", tmp_path)[1]


SUBPACKAGES = ("datasets", "preprocess", "synth", "train")
"""Pipeline steps split by idea into a folder of modules, each imported as one module."""


def test_subpackages_are_folders_whose_modules_take_their_layer():
    for name in SUBPACKAGES:
        folder = PACKAGE / name
        assert (folder / "__init__.py").is_file() and not (PACKAGE / f"{name}.py").exists()
        modules = sorted(folder.glob("*.py"))
        assert len(modules) > 2, f"{name}/ holds {len(modules)} files"
        for path in modules:
            assert layer(module_name(path)) == LAYER_OF[name], path
    assert {p.parent.name for p in PACKAGE.glob("*/__init__.py")} - {"lessons", "models"} == set(
        SUBPACKAGES)


def test_api_pages_show_every_public_module_of_a_subpackage():
    api = (ROOT / "book" / "api.md").read_text()
    shown = set(re.findall(r"^\.\. automodule:: (\S+)$", api, flags=re.M))
    for name in (m for layer in LAYERS for m in layer if m != "cli"):  # the command: README
        assert f"skullstrip_lib.{name}" in shown, f"book/api.md: no automodule for {name}"
    for name in SUBPACKAGES:
        for path in sorted((PACKAGE / name).glob("[!_]*.py")):
            assert module_name(path) in shown, f"book/api.md: no automodule for {path.stem}"


def test_readme_states_the_same_layers():
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    stated = " → ".join(", ".join(f"`{m}`" for m in group) for group in LAYERS)
    assert stated in layout, f"README's Layout section should state the layers as: {stated}"
    assert "lessons" in layout


def test_pipeline_never_imports_lessons():
    for path in SOURCES:
        if "lessons" in path.parts:
            continue
        for line, target, _ in imports(path):
            assert not re.match(r"skullstrip_lib\.lessons\b", target), (
                f"{path.relative_to(ROOT)}:{line}: a pipeline module imports {target}")


LESSON_IMPORT = re.compile(r"^\s*((from|import)\s+skullstrip_lib\.lessons\b"
                           r"|from\s+skullstrip_lib\s+import\s+[^\n]*\blessons\b)", re.M)


# The tests of the book itself (its chapters run top to bottom, its pages): they may use the
# chapters' helpers as the chapters do (the student's chapter 7 run, kept for chapters 8-10).
BOOK_TESTS = {"test_chapters.py", "test_chapters_full.py", "test_book_pages.py",
              "test_book_browser.py"}


def test_pipeline_tests_never_import_lessons():
    # tests/test_*.py test the pipeline with the pipeline alone (the lessons' tests are in
    # tests/lessons/); the text is read, so a script a test runs in a subprocess counts too.
    assert LESSON_IMPORT.search("x = 1\n    from skullstrip_lib.lessons.bias import f\n")
    assert LESSON_IMPORT.search("from skullstrip_lib import io, lessons\n")
    assert not LESSON_IMPORT.search("# the book's skullstrip_lib.lessons.bias, by hand\n")
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        if path.name in BOOK_TESTS:
            continue
        found = LESSON_IMPORT.search(path.read_text())
        assert not found, f"{path.relative_to(ROOT)}: {found.group(0).strip()}"


def test_star_import_gives_every_pipeline_module():
    import skullstrip_lib

    namespace: dict = {}
    exec("from skullstrip_lib import *", namespace)  # raised ModuleNotFoundError once
    public = {name for layer in LAYERS for name in layer}
    assert public <= set(namespace), public - set(namespace)
    assert set(skullstrip_lib.__all__) - {"__version__"} == public
