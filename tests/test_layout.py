"""The two floors, checked: the recognition side and the data sets never import PyTorch, and no modules import each
other in a circle.

First from the source (``ast``: every ``import`` and ``from`` at any depth of every module of src/digitlab), then by
running it: in a fresh interpreter where ``import torch`` fails, every recognition and data set module imports,
`digitlab predict` (with ``--explain``) reads an image, the Python API answers, `digitlab export-samples` writes
MNIST's images, and `digitlab serve --backend onnx` answers HTTP; the training jobs say in one line which extra to
install. Last, docs/architecture.md's "Where things live" names every module of the package, and nothing that is
not there.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "digitlab"

# The recognition side, the data sets, and what they share with the training side: none of these may reach PyTorch.
TORCH_FREE = ("digitlab.recognition", "digitlab.datasets", "digitlab.files", "digitlab.errors", "digitlab.labels",
              "digitlab.languages", "digitlab.serve.runner")
TORCH = ("torch", "torchvision", "safetensors.torch")
# The one door upstairs: the torch backend imports the training floor's checkpoint loader when a user asks for it.
# Imports inside these (module, class or function) are not followed; everything else is.
DOORS = {"digitlab.recognition.engine": "TorchEngine"}


# --- the import graph, from the source --------------------------------------------------------------------------------

def module_files(package: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__.py)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path], door: str | None = None) -> list[str]:
    """The modules ``name`` imports anywhere in its file, as dotted names: the package's own resolved to the module
    that runs (``from a.b import c`` is ``a.b.c`` when that is a module, else ``a.b``), others as written. Imports
    inside a class or function called ``door`` are left out."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    own = {module.split(".")[0] for module in modules}
    found: list[str] = []

    def resolve(dotted: str) -> str:
        while dotted not in modules and "." in dotted and dotted.split(".")[0] in own:
            dotted = dotted.rpartition(".")[0]  # a name defined in a module, not a module itself
        return dotted

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == door:
            return
        if isinstance(node, ast.Import):
            found.extend(resolve(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append(candidate if candidate in modules else resolve(base))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def import_graph(package: Path, doors: dict[str, str] | None = None) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> the package's modules it imports, module -> the outside modules it imports)."""
    modules = module_files(package)
    inside, outside = {}, {}
    for name, path in modules.items():
        targets = set(imports_of(name, path, modules, (doors or {}).get(name))) - {name}
        inside[name] = {t for t in targets if t in modules}
        outside[name] = targets - inside[name]
    return inside, outside


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm): each is an import cycle."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def torch_paths(inside: dict[str, set[str]], outside: dict[str, set[str]], roots) -> list[str]:
    """For each module reachable from ``roots`` that imports PyTorch, the chain of imports that gets there. Importing
    ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``, so those count as imported too."""
    def imported(module: str) -> set[str]:
        parents = {module.rsplit(".", depth)[0] for depth in range(1, module.count(".") + 1)}
        return (inside.get(module, set()) | parents) & inside.keys()

    came_from = {root: None for root in roots if root in inside}
    queue = list(came_from)
    while queue:
        module = queue.pop(0)
        for target in sorted(imported(module)):
            if target not in came_from:
                came_from[target] = module
                queue.append(target)
    found = []
    for module in came_from:
        if any(name == t or name.startswith(t + ".") for name in outside[module] for t in TORCH):
            chain, step = [], module
            while step is not None:
                chain.append(step)
                step = came_from[step]
            found.append(" -> ".join(reversed(chain)) + " -> torch")
    return sorted(found)


def torch_free_roots(modules) -> list[str]:
    return [m for m in modules if any(m == root or m.startswith(root + ".") for root in TORCH_FREE)]


def test_no_module_imports_itself_in_a_circle():
    inside, _ = import_graph(PACKAGE)
    assert cycles(inside) == [], "import cycles (each list imports itself round the circle)"


def test_nothing_on_the_torch_free_side_reaches_torch():
    inside, outside = import_graph(PACKAGE, DOORS)
    roots = torch_free_roots(inside)
    assert {"digitlab.recognition.engine", "digitlab.datasets.mnist", "digitlab.labels"} <= set(roots)
    assert torch_paths(inside, outside, roots) == []


def test_the_door_is_where_it_is_said_to_be():
    """The torch backend is the one door, and without the exception it is seen: the check does follow lazy imports."""
    inside, outside = import_graph(PACKAGE)
    found = torch_paths(inside, outside, ["digitlab.recognition.engine"])
    assert any(path.startswith("digitlab.recognition.engine -> digitlab.training") for path in found)


def test_the_checks_find_a_cycle_and_a_lazy_torch_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "low" / "a.py").write_text("from . import b\n")
    (package / "low" / "b.py").write_text("def f():\n    from pkg.low.a import thing\n")
    (package / "low" / "c.py").write_text("class K:\n    def m(self):\n        from ..high import x\n")
    (package / "high.py").write_text("def g():\n    import torch.nn\n")
    inside, outside = import_graph(package)
    assert cycles(inside) == [["pkg.low.a", "pkg.low.b"]]
    assert torch_paths(inside, outside, ["pkg.low.c"]) == ["pkg.low.c -> pkg.high -> torch"]
    inside, outside = import_graph(package, {"pkg.low.c": "K"})
    assert torch_paths(inside, outside, ["pkg.low.c"]) == []


# --- running it without PyTorch -----------------------------------------------------------------------------------

# Installed through a sitecustomize module, so the servers' worker processes inherit it.
BLOCKER = '''
import os, sys

class NotInstalled:
    """Act as if these packages were not installed: their import fails as a missing one does."""
    names = set(os.environ["DIGITLAB_TEST_BLOCK"].split(","))

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
'''


@pytest.fixture(scope="module")
def without(tmp_path_factory):
    """``without("torch")(*argv)``: run the command in a fresh interpreter where those packages cannot be imported."""
    folder = tmp_path_factory.mktemp("blocker")
    (folder / "sitecustomize.py").write_text(BLOCKER)

    def env(*blocked: str) -> dict[str, str]:
        path = os.pathsep.join([str(folder), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
        return {**os.environ, "PYTHONPATH": path, "DIGITLAB_TEST_BLOCK": ",".join(blocked)}

    def make(*blocked: str):
        def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, *argv], env=env(*blocked), capture_output=True, text=True,
                                  timeout=120, **kwargs)
        run.env = env(*blocked)
        return run
    return make


@pytest.fixture(scope="module")
def seven(test_split, tmp_path_factory) -> Path:
    """MNIST test image 0 (a 7) as a person would send it: dark ink on white paper, 112 px."""
    path = tmp_path_factory.mktemp("seven") / "seven.png"
    assert int(test_split[1][0]) == 7
    Image.fromarray(255 - test_split[0][0].numpy()).resize((112, 112), Image.BILINEAR).save(path)
    return path


def test_the_blocker_blocks(without):
    result = without("torch")("-c", "import torch")
    assert result.returncode == 1 and "No module named 'torch'" in result.stderr


def test_every_torch_free_module_imports_without_torch(without):
    names = torch_free_roots(module_files(PACKAGE))
    result = without("torch")("-c", "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)",
                              *names)
    assert result.returncode == 0, result.stderr


def test_predict_and_explain_without_torch(without, seven, tmp_path):
    """The defect this guards: explain.py imported the checkpoint module (and with it torch) for atomic_write."""
    figure = tmp_path / "explain.png"
    result = without("torch")("-m", "digitlab", "predict", "--backend", "onnx", "--json", "--explain", str(figure),
                              str(seven))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["digit"] == 7
    assert Image.open(figure).format == "PNG"
    # no --backend: the bundled model runs on onnxruntime by itself when PyTorch is missing
    result = without("torch")("-m", "digitlab", "predict", "--json", str(seven))
    assert result.returncode == 0 and json.loads(result.stdout)["digit"] == 7, result.stderr


def test_predict_jobs_without_torch(without, seven, tmp_path):
    """Worker processes load the bundled model on onnxruntime too, when PyTorch is missing."""
    out = tmp_path / "answers.jsonl"
    result = without("torch")("-m", "digitlab", "predict", "--jobs", "2", "--out", str(out), *[str(seven)] * 40)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["digit"] for line in out.read_text().splitlines()] == [7] * 40


def test_eval_of_an_export_without_torch(without, mnist_dir, seven, tmp_path):
    """The small install scores an ONNX export on MNIST's test set and on a labelled folder; a checkpoint needs the
    train extra, said in one line."""
    export = str(ROOT / "src" / "digitlab" / "pretrained" / "digitnet.onnx")
    run = without("torch")
    result = run("-m", "digitlab", "eval", export, "--json", "--data-dir", str(mnist_dir))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accuracy"] > 0.99
    (tmp_path / "mine" / "7").mkdir(parents=True)
    (tmp_path / "mine" / "7" / "a.png").write_bytes(seven.read_bytes())
    mine = run("-m", "digitlab", "eval", export, "--json", "--data", str(tmp_path / "mine"))
    assert mine.returncode == 0 and json.loads(mine.stdout)["accuracy"] == 1.0, mine.stderr
    alone = tmp_path / "alone.safetensors"  # a checkpoint with no export of its own beside it
    alone.write_bytes(Path(export.replace(".onnx", ".safetensors")).read_bytes())
    checkpoint = run("-m", "digitlab", "eval", str(alone))
    assert checkpoint.returncode == 2 and checkpoint.stderr.strip().endswith("pip install 'digitlab[train]'")


def test_python_api_without_torch(without, seven):
    code = ("import sys\nfrom digitlab.recognition.engine import load_engine\n"
            "from digitlab.recognition.predict import Recognizer\n"
            "print(Recognizer(load_engine(None, 'onnx')).predict_one(sys.argv[1]).digit)\n"
            "print(Recognizer(load_engine()).predict_one(sys.argv[1]).digit)")
    result = without("torch")("-c", code, str(seven))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["7", "7"]


def test_export_samples_without_torch(without, tmp_path):
    """MNIST's files are read by datasets.mnist; training.data only makes tensors of them."""
    result = without("torch")("-m", "digitlab", "export-samples", "--count", "2", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "labels.csv").read_text().splitlines() == ["file,label", "test_00000.png,7", "test_00001.png,2"]


@pytest.mark.parametrize("argv,job,extra", [
    (["train", "--epochs", "1"], "training", "train"),
    (["eval", "--backend", "torch"], "evaluating a checkpoint", "train"),
    (["calibrate", "x.safetensors"], "calibrating a checkpoint", "train"),
    (["models"], "listing the networks", "train"),
    (["export", "--onnx", "x.onnx"], "exporting to ONNX", "train"),
    (["predict", "--model", "x.safetensors", "x.png"], "running a .safetensors checkpoint", "train"),
    (["report"], "drawing the report", "train"),
])
def test_a_missing_extra_is_one_line_naming_it(without, argv, job, extra):
    result = without("torch")("-m", "digitlab", *argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"digitlab: error: {job} needs PyTorch: pip install 'digitlab[{extra}]'"


def test_serve_without_fastapi_is_one_line(without):
    result = without("torch", "fastapi", "uvicorn")("-m", "digitlab", "serve", "--backend", "onnx")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "pip install 'digitlab[serve]'" in result.stderr


def test_serve_onnx_without_torch(without, seven, start_server):
    run = without("torch")
    server, base, health = start_server("--backend", "onnx", "--workers", "1", "--log-level", "warning", env=run.env)
    try:
        assert health
        assert_reads_seven(base, seven)
    finally:
        server.terminate()
        errors, _ = server.communicate(timeout=30)
    assert "Traceback" not in errors


# --- with PyTorch installed: what does not run it never imports it -----------------------------------------------------

# Installed through a sitecustomize module, so the servers' and predict's worker processes inherit it: a process that
# imports one of the packages DIGITLAB_TEST_WATCH names writes a line to the file DIGITLAB_TEST_IMPORT_LOG names, the
# package and the process's command line as JSON. An audit hook sees real imports only, not importlib.util.find_spec,
# which is how the engine asks whether PyTorch is installed.
TRIPWIRE = '''
import json, os, sys

_watched, _noted = set(os.environ["DIGITLAB_TEST_WATCH"].split(",")), set()

def _note(event, args):
    if event == "import" and str(args[0]).split(".")[0] in _watched - _noted:
        _noted.add(str(args[0]).split(".")[0])
        with open(os.environ["DIGITLAB_TEST_IMPORT_LOG"], "a") as log:
            log.write(json.dumps([str(args[0]).split(".")[0], sys.argv]) + "\\n")

sys.addaudithook(_note)
'''


def tripwire(folder: Path, *packages: str) -> tuple[dict[str, str], Path]:
    """(environment, log): run a command with that environment, and the log has a line for every process that
    imported one of ``packages``."""
    (folder / "tripwire").mkdir()
    (folder / "tripwire" / "sitecustomize.py").write_text(TRIPWIRE)
    log = folder / "imports.jsonl"
    path = os.pathsep.join([str(folder / "tripwire"), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "DIGITLAB_TEST_WATCH": ",".join(packages),
            "DIGITLAB_TEST_IMPORT_LOG": str(log)}, log


@pytest.fixture
def watched(tmp_path):
    """(environment, log): run a command with that environment, and the log names every process that imported torch."""
    return tripwire(tmp_path, "torch")


def run_watched(env, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlab", *argv], env=env, capture_output=True, text=True,
                          timeout=120)


def test_predict_and_help_never_import_torch_when_it_is_installed(watched, seven):
    env, log = watched
    assert run_watched(env, "predict", "--backend", "torch", "--json", str(seven)).returncode == 0
    assert log.read_text().count("\n") == 1, "the tripwire sees a real import of torch"
    log.unlink()
    export = str(ROOT / "src" / "digitlab" / "pretrained" / "digitnet.onnx")
    for argv in (["--help"], ["predict", "--help"], ["serve", "--help"], ["eval", "--json", export], ["eval", "--json"],
                 ["predict", "--json", str(seven)], ["predict", "--json", "--jobs", "2", *[str(seven)] * 40]):
        result = run_watched(env, *argv)
        assert result.returncode == 0, (argv, result.stderr[-2000:])
        assert not log.exists(), f"digitlab {' '.join(argv[:3])} imported torch in: {log.read_text()}"
    assert [json.loads(line)["digit"] for line in result.stdout.splitlines()] == [7] * 40


def assert_reads_seven(base: str, seven) -> None:
    """POST the image of a 7 to a running server's /api/predict: answered 200, digit 7."""
    request = urllib.request.Request(f"{base}/api/predict", data=seven.read_bytes(), method="POST",
                                     headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200 and json.load(response)["digit"] == 7


def serve_two_workers_a_seven(start_server, env, seven) -> None:
    """Start `digitlab serve` with two workers in ``env``, have it read a 7, and stop it."""
    server, base, _ = start_server("--workers", "2", "--log-level", "warning", env=env)
    try:
        assert_reads_seven(base, seven)
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_serve_never_imports_torch_when_it_is_installed(watched, seven, start_server):
    env, log = watched
    serve_two_workers_a_seven(start_server, env, seven)
    assert not log.exists(), f"digitlab serve imported torch in: {log.read_text()}"


def test_the_serve_process_leaves_reading_images_to_its_workers(tmp_path, seven, start_server):
    """`digitlab serve` hands every image to its worker processes, so the server process never imports numpy, OpenCV,
    Pillow or onnxruntime: they would cost it CPU time on the way to its first answer, while the workers import the
    same."""
    env, log = tripwire(tmp_path, "numpy", "cv2", "PIL", "onnxruntime")
    serve_two_workers_a_seven(start_server, env, seven)
    imports = [json.loads(line) for line in log.read_text().splitlines()]
    by_server = {package for package, argv in imports if argv[1:2] == ["serve"]}
    by_workers = {package for package, argv in imports if Path(argv[0]).parts[-2:] == ("serve", "workers.py")}
    assert by_server == set(), f"the server process imported {sorted(by_server)}"
    assert by_workers == {"numpy", "cv2", "PIL", "onnxruntime"}, imports  # the tripwire works where images are read


# --- the map of the package in docs/architecture.md ----------------------------------------------------------------

ARCHITECTURE = ROOT / "docs" / "architecture.md"


def package_map(markdown: str) -> list[Path]:
    """The paths in the "Where things live" tree of docs/architecture.md, relative to the repository root.

    The tree is the first fenced block after that heading. A line whose first word ends in ``/`` or ``.py`` names a
    folder or a file; its indentation puts it inside the folder named above it at a smaller indentation (a line at
    the left margin is at the root). Other lines continue a description and are skipped."""
    section = markdown.split("## Where things live", 1)[1]
    block = section.split("```", 2)[1].split("\n", 1)[1]
    paths: list[Path] = []
    folders: list[tuple[int, Path]] = []
    for line in block.splitlines():
        words = line.split()
        if not words or not (words[0].endswith("/") or words[0].endswith(".py")):
            continue
        indent = len(line) - len(line.lstrip(" "))
        while folders and folders[-1][0] >= indent:
            folders.pop()
        path = (folders[-1][1] if folders else Path()) / words[0].rstrip("/")
        paths.append(path)
        if words[0].endswith("/"):
            folders.append((indent, path))
    return paths


def unlisted_modules(listed: list[Path]) -> list[str]:
    """The modules of src/digitlab the list does not name; a package's ``__init__.py`` is named by its folder."""
    named = set(listed)
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if (relative.parent if path.name == "__init__.py" else relative) not in named:
            missing.append(str(relative))
    return missing


def test_the_map_names_every_module_and_only_what_exists():
    listed = package_map(ARCHITECTURE.read_text(encoding="utf-8"))
    assert Path("src/digitlab/serve/runner.py") in listed  # the parser reads the tree at all
    assert unlisted_modules(listed) == [], "modules missing from docs/architecture.md's 'Where things live'"
    assert [str(path) for path in listed if not (ROOT / path).exists()] == [], "listed in the map, not in the tree"
    assert len(listed) == len(set(listed)), "listed twice"


def test_the_map_check_sees_a_missing_module():
    page = ARCHITECTURE.read_text(encoding="utf-8")
    without_runner = "\n".join(line for line in page.splitlines() if not line.lstrip().startswith("runner.py "))
    assert unlisted_modules(package_map(without_runner)) == ["src/digitlab/serve/runner.py"]
    # a module indented under the wrong folder is not where the tree says it is
    moved = page.replace("    runner.py        ", "  runner.py        ", 1)
    assert "src/digitlab/serve/runner.py" in unlisted_modules(package_map(moved))
