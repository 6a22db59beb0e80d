"""Stand-in for the GPU machine's Python environment, on this one: run a script with every
third-party import blocked whose distribution is neither on that machine (machine_packages.txt)
nor carried to it as a wheel (wheels.txt).

    python benchmarks/gpu/machine_sim.py SCRIPT [ARGS...]

It checks *which* packages are importable, not their versions (the venv's stay in use). The
package under test (``lookahead_fastai``) and the standard library are always allowed.
"""
import importlib.metadata as metadata
import re
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALWAYS = {"lookahead_fastai", "lookahead-fastai"}


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).strip().lower()


def read_names(path):
    """Distribution names of a requirements-like file: one per line, '#' comments, pins dropped."""
    names = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(normalize(re.split(r"[=<>!~\[;\s]", line, maxsplit=1)[0]))
    return names


def _requirements(dist_name):
    """Names a distribution installed here requires (extras left out)."""
    try:
        requires = metadata.requires(dist_name) or []
    except metadata.PackageNotFoundError:
        return []
    return [normalize(re.split(r"[=<>!~\[;(\s]", r, maxsplit=1)[0]) for r in requires if "extra ==" not in r]


def allowed_distributions():
    """The machine's distributions with what they require (there, their own versions' needs are met,
    whatever versions the venv has here), and the carried wheels (which bring nothing else)."""
    allowed, todo = set(), list(read_names(HERE / "machine_packages.txt"))
    while todo:
        name = todo.pop()
        if name not in allowed:
            allowed.add(name)
            todo.extend(_requirements(name))
    return allowed | set(read_names(HERE / "wheels.txt"))


def blocked_modules(allowed):
    """Top-level modules installed here whose every distribution is outside ``allowed``."""
    blocked = set()
    for module, dists in metadata.packages_distributions().items():
        if not any(normalize(d) in allowed for d in dists):
            blocked.add(module)
    return blocked - set(sys.stdlib_module_names) - ALWAYS


class _Blocker:
    def __init__(self, blocked):
        self.blocked = blocked

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in self.blocked:
            raise ModuleNotFoundError(f"No module named {top!r} on the GPU machine (machine_sim.py: "
                                      "add its wheel to benchmarks/gpu/wheels.txt)", name=fullname)
        return None


def install():
    sys.meta_path.insert(0, _Blocker(blocked_modules(allowed_distributions())))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    install()
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, str(Path(script).resolve().parent))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
