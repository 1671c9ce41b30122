"""The code's shape: no import cycle between modules, lower layers never import higher ones,
every module imports on its own, and no test module imports another."""
import ast
import glob
import os
import random
import re
import subprocess
import sys

import pytest

from conftest import REPO

PACKAGES = ("paddle_gan_kit", "data_prep", "safe_files")
# what paddle_gan_kit may import of data_prep: the stage itself and its built-in datasets
DATA_PREP_API = {"data_prep", "data_prep.builtin", "data_prep.gems"}


def modules() -> dict[str, str]:
    """Dotted module name -> file, for every module of the two packages."""
    found = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), REPO)[:-3].replace(os.sep, ".")
                    found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(folder, name)
    return found


def module_level_imports(name: str, path: str, known: set) -> set:
    """Our modules that ``name`` imports at module level (not inside functions)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    out = set()
    for node in tree.body:
        if isinstance(node, ast.Try):  # import guards at module level count too
            nodes = node.body + [n for h in node.handlers for n in h.body] + node.finalbody
        else:
            nodes = [node]
        for node in nodes:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                # ``from package import module`` needs the module, not the package's __init__
                # (which may be importing this very module: a package may import its parts)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    out.add(target)
    return out


def import_graph() -> dict[str, set]:
    found = modules()
    return {name: module_level_imports(name, path, set(found)) for name, path in found.items()}


def test_there_is_no_import_cycle():
    graph = import_graph()
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for child in graph[node]:
            if state.get(child) == "open":
                cycle = stack[stack.index(child):] + [child]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if child not in state:
                visit(child, stack + [child])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_lower_layers_import_nothing_above_them():
    graph = import_graph()
    for name, imports in graph.items():
        if name.startswith("data_prep"):
            assert not any(i.startswith("paddle_gan_kit") for i in imports), (name, imports)
        if name.startswith("safe_files"):  # the shared bottom layer
            assert all(i.startswith("safe_files") for i in imports), (name, imports)
        if name.startswith("paddle_gan_kit"):  # the stage below is used through its public package only
            assert not {i for i in imports if i.startswith("data_prep.") and i not in DATA_PREP_API}, (name, imports)
    assert {i for i in graph["paddle_gan_kit.errors"] if i.startswith("paddle_gan_kit")} <= {"paddle_gan_kit"}
    for low in ("paddle_gan_kit.config", "paddle_gan_kit.images", "paddle_gan_kit.snapshot", "paddle_gan_kit.rng"):
        above = {"paddle_gan_kit.trainer", "paddle_gan_kit.run", "paddle_gan_kit.steps", "paddle_gan_kit.monitor",
                 "paddle_gan_kit.models", "paddle_gan_kit.metrics", "paddle_gan_kit.train", "paddle_gan_kit.evaluate"}
        assert not graph[low] & above, (low, graph[low] & above)


def test_every_module_imports_on_its_own_in_any_order():
    """Each module imported first, in a fresh set of our modules (Paddle stays loaded, which a
    fresh interpreter would load anyway), in a shuffled order."""
    names = sorted(modules())
    random.Random(0).shuffle(names)
    script = (
        "import importlib, sys\n"
        f"names = {names!r}\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in ('paddle_gan_kit', 'data_prep', 'safe_files')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('imported', len(names))\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported {len(names)}" in result.stdout


def test_no_test_module_imports_another():
    tests = os.path.join(REPO, "tests")
    own = {name[:-3] for name in os.listdir(tests) if name.startswith("test_") and name.endswith(".py")}
    for name in own:
        tree = ast.parse(open(os.path.join(tests, name + ".py"), encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in own:
                raise AssertionError(f"{name} imports {node.module}; shared helpers live in conftest.py")
            if isinstance(node, ast.Import):
                assert not {a.name for a in node.names} & own, name


def test_every_config_key_is_used_by_a_recipe_or_documented():
    """An option ships only if a recipe uses it or the README's tables or docs/quality.md name it."""
    import yaml

    from paddle_gan_kit.config import field_names

    used = set()
    for path in glob.glob(os.path.join(REPO, "configs", "*.yaml")):
        used |= set(yaml.safe_load(open(path, encoding="utf-8")))
    text = "".join(open(os.path.join(REPO, name), encoding="utf-8").read() for name in ("README.md", "docs/quality.md"))
    missing = [key for key in field_names()
               if key not in used and f"`{key}`" not in text and f"`--{key.replace('_', '-')}" not in text
               and not re.search(rf"`{key}[ =,`]|, `{key}`", text)]
    assert not missing, f"config keys no recipe uses and no table names: {missing}"


def test_no_commit_hash_in_the_readme_recipes_or_code():
    """Users cannot use commit hashes: docs/ names the code version of a table, nothing else does."""
    if subprocess.run(["git", "-C", REPO, "rev-parse"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    paths = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
    paths += [path for package in PACKAGES for path in glob.glob(os.path.join(REPO, package, "**", "*.py"),
                                                                  recursive=True)]
    words = {(word, path) for path in paths for word in re.findall(r"\b[0-9a-f]{7,40}\b", open(path).read())}
    found = [(word, os.path.relpath(path, REPO)) for word, path in sorted(words)
             if subprocess.run(["git", "-C", REPO, "cat-file", "-e", f"{word}^{{commit}}"],
                               capture_output=True).returncode == 0]
    assert not found, found
