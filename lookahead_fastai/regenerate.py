"""Everything this project generates, rebuilt by one command: ``make regenerate``
(``python -m lookahead_fastai.regenerate``; ``--check`` only lists what is stale, exit code 1).

What needs no training is rebuilt from code and committed inputs:

* ``notebooks/*.ipynb`` from ``notebooks/build_notebooks.py`` (cell sources, ids, metadata; the
  outputs of a cell whose source is unchanged are kept);
* ``environment.yml`` from the pins of ``pyproject.toml``;
* the README's generated blocks (between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``):
  the experiment table from ``lookahead_fastai.experiments.EXPERIMENTS``, the benchmark table from
  the fields of ``benchmarks/results/optimizer_step.json`` and ``training.json``;
* ``reports/EXP.md`` and ``reports/README.md`` from committed raw results ``reports/data/EXP.jsonl``
  when there are any (imported into a temporary store, then ``write_report``/``write_index``).

:func:`stale` compares each committed file with what its generator writes now, in memory, and
says which file differs and the command that fixes it (``tests/test_generated.py``)."""
import argparse
import difflib
import importlib.util
import json
import shutil
import sys
import tempfile
import tomllib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "make regenerate"
PYTHON_VERSION = "3.11"  # the conda env's Python (the venv's; pyproject only says >=3.10)


# ------------------------------------------------------------------------------------------------
# notebooks
# ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def build_notebooks():
    """``notebooks/build_notebooks.py`` as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "notebooks" / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook(name, committed=None):
    """The notebook ``name`` as its generator builds it, with the outputs (and execution counts) of
    the committed notebook ``committed`` (a dict) kept for every cell whose id and source are unchanged."""
    import nbformat
    nb = build_notebooks().build(name)
    old = {c.get("id"): c for c in (committed or {}).get("cells", [])}
    for cell in nb.cells:
        before = old.get(cell.id)
        if cell.cell_type == "code" and before and _source(before) == cell.source:
            cell.outputs = [nbformat.from_dict(o) for o in before.get("outputs", [])]
            cell.execution_count = before.get("execution_count")
    return nb


def _source(cell):
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def notebook_text(name, committed=None):
    import nbformat
    text = nbformat.writes(notebook(name, committed))
    return text if text.endswith("\n") else text + "\n"  # as nbformat.write leaves the file


def _committed_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------
# environment.yml
# ------------------------------------------------------------------------------------------------
def pins(requirements):
    """``{name: version}`` of the ``name==version`` lines (names lower-case, ``_`` as ``-``), in order."""
    out = {}
    for line in requirements:
        if "==" in line:
            name, ver = line.split("==")
            out[name.strip().lower().replace("_", "-")] = ver.strip()
    return out


def pyproject_pins(root=ROOT):
    """Every pin of ``pyproject.toml``: the dependencies, then each extra's new ones, in file order."""
    project = tomllib.loads((Path(root) / "pyproject.toml").read_text())["project"]
    wanted = pins(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        for name, ver in pins(extra).items():
            wanted.setdefault(name, ver)
    return wanted


def environment_yml(root=ROOT):
    """The text of ``environment.yml``: conda's Python and pip, then every pin of ``pyproject.toml``."""
    lines = ["# conda env create -f environment.yml && conda activate lookahead-fastai",
             f"# Generated from pyproject.toml's pins (dependencies and every extra) by `{COMMAND}`; do not edit.",
             "name: lookahead-fastai", "channels:", "  - conda-forge", "dependencies:",
             f"  - python={PYTHON_VERSION}", "  - pip", "  - pip:"]
    lines += [f"      - {name}=={ver}" for name, ver in pyproject_pins(root).items()]
    lines.append("      - -e .")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# README blocks
# ------------------------------------------------------------------------------------------------
END = "<!-- end generated -->"


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def experiments_block(root=ROOT):
    from .experiments import EXPERIMENTS
    rows = [f"| `{name}` | {_cell(exp.description)} |" for name, exp in EXPERIMENTS.items()]
    return "\n".join(["| experiment | what it compares |", "|---|---|", *rows])


BENCH_STEP, BENCH_TRAINING = "benchmarks/results/optimizer_step.json", "benchmarks/results/training.json"


def benchmarks_block(root=ROOT):
    """The README's benchmark summary from ``benchmarks/results/*.json``: the numbers ``make bench``
    writes as data beside its markdown (read as fields, never parsed back out of the markdown)."""
    step = json.loads((Path(root) / BENCH_STEP).read_text())
    training = json.loads((Path(root) / BENCH_TRAINING).read_text())
    rows_by_name = {r["name"]: r for r in step["rows"]}

    def ratio(contender):
        return f"{rows_by_name[contender]['ratio']:.3f}x"

    ours, k = rows_by_name[step["ours"]], step["k"]
    train_step, throughput = training["training_step"], training["epoch_throughput"]
    paths, demo = training["data_paths"], training.get("demo")  # no "demo": bench_training.py --skip-demo
    rows = [
        (f"optimizer step, ours (k={k}, pullback none) / bare SGD-momentum, ResNet-18 params",
         f"**{ratio(step['ours'])}** (median per-round ratio {ours['paired_ratio']:.3f}x)",
         f"<= {step['target_ratio']:.2f}x"),
        ("optimizer step, ours (pullback) / bare SGD", ratio("ours (pullback=pullback)"), "—"),
        ("optimizer step, timm Lookahead / bare SGD", ratio("timm Lookahead"), "ours below it"),
        ("optimizer step, pytorch_optimizer Lookahead / bare SGD", ratio("pytorch_optimizer Lookahead"),
         "ours below it"),
        ("training step (fwd + bwd + opt), Lookahead(SGD) / SGD, small CNN, bs 128",
         f"{train_step['ratio']:.3f}x", f"<= {train_step['target_max']:.2f}x"),
        ("epoch throughput, fastai Learner / minimal PyTorch loop (CIFAR-10 subset, tensor path)",
         f"{throughput['ratio']:.3f}", f">= {throughput['target_min']:.2f}"),
        ("epoch time, in-memory tensor path vs fastai PIL path (CIFAR-10 subset)",
         f"{paths['tensor_s']:.1f} s vs {paths['pil_s']:.1f} s ({paths['pil_over_tensor']:.2f}x faster)", "—"),
        ("`make demo` wall time, venv present (12 runs + report)",
         f"{demo['wall_s']:.1f} s" if demo else "not measured (`--skip-demo`)",
         f"<= {demo['target_max_s']:g} s" if demo else "—"),
    ]
    meta = step["meta"]
    head = (f"Measured {meta['date'][:10]} on this project's development machine ({meta['machine']}; "
            f"torch {meta['versions']['torch']}; device {training['meta']['device']}), each ratio from contenders "
            f"measured side by side in one run ({BENCH_STEP.replace('.json', '.md')}, "
            f"{BENCH_TRAINING.replace('.json', '.md')}):")
    return "\n".join([head, "", "| benchmark (`make bench`) | measured | target |", "|---|---|---|",
                      *(f"| {a} | {b} | {c} |" for a, b, c in rows)])


README_BLOCKS = {"experiments": (experiments_block, "lookahead_fastai.experiments (each EXPERIMENT's description)"),
                 "benchmarks": (benchmarks_block, "benchmarks/results/*.json")}


def replace_block(text, name, body):
    """``text`` with the lines between ``<!-- generated: name -->`` and the next ``<!-- end generated -->``
    replaced by ``body``; ``ValueError`` when the markers are missing."""
    start = f"<!-- generated: {name} -->"
    if start not in text:
        raise ValueError(f"README.md has no '{start}' marker")
    head, rest = text.split(start, 1)
    if END not in rest:
        raise ValueError(f"README.md: '{start}' has no '{END}' after it")
    tail = rest.split(END, 1)[1]
    return f"{head}{start}\n{body}\n{END}{tail}"


def readme_text(text, root=ROOT):
    for name, (make, _) in README_BLOCKS.items():
        text = replace_block(text, name, make(root))
    return text


# ------------------------------------------------------------------------------------------------
# reports: the parts derived from code (title, protocol lines, declared sweeps, deviations, reference)
# ------------------------------------------------------------------------------------------------
def _sections(text):
    """``{'## heading': body}`` of a markdown report (bodies stripped)."""
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {heading: "\n".join(body).strip() for heading, body in sections.items()}


def report_from_code(name):
    """``reports/NAME.md`` as ``write_report`` writes it from a store without runs: what in a report is
    derived from code alone (the title, declared sweeps, deviations, reference numbers)."""
    from .results.report import write_report
    from .store import ResultsStore
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "empty.sqlite"
        ResultsStore(store_path).close()
        return Path(write_report(store_path, name, out_dir=Path(tmp) / "reports")).read_text()


def report_differences(root=ROOT):
    """``{report path: [what differs]}``: each committed ``reports/EXP.md`` whose code-derived parts
    (title line, each scale's protocol line, the sections a store without runs also gets) are not what
    ``write_report`` writes from the experiment's code now."""
    from .experiments import EXPERIMENTS
    root = Path(root)
    out = {}
    for name, exp in EXPERIMENTS.items():
        path = root / "reports" / f"{name}.md"
        if not path.exists():
            continue
        committed, code = path.read_text(), report_from_code(name)
        have, want = _sections(committed), _sections(code)
        what = []
        if committed.splitlines()[:1] != code.splitlines()[:1]:
            what.append("title (the experiment's description)")
        for heading, body in have.items():
            if heading.startswith("## Scale `"):
                scale = heading.split("`")[1]
                line = f"- **Protocol**: {exp.protocol.get(scale, '')}"
                if line not in body.splitlines():
                    what.append(f"protocol of scale `{scale}`")
        what += [f"section '{heading[3:]}'" for heading, body in want.items() if have.get(heading) != body]
        if what:
            out[f"reports/{name}.md"] = what
    return out


def _stale_reports(root, with_raw_results, differences=None):
    """``[(rel, experiment name, what differs)]`` of the reports in ``differences`` (default:
    :func:`report_differences`) whose raw results are committed (``with_raw_results``) or are not."""
    root = Path(root)
    out = []
    for rel, what in (report_differences(root) if differences is None else differences).items():
        name = Path(rel).stem
        if (root / "reports" / "data" / f"{name}.jsonl").exists() == with_raw_results:
            out.append((rel, name, what))
    return out


def _report_messages(root, with_raw_results, differences=None):
    """Messages for the stale reports whose raw results are committed (``with_raw_results``: fixed by
    ``make regenerate``) or are not (the runs' store or a training run is needed)."""
    messages = []
    for rel, name, what in _stale_reports(root, with_raw_results, differences):
        fix = (f"run `{COMMAND}`" if with_raw_results else
               f"its raw results are not committed: `lookahead-fastai store export {name}` (from the store "
               f"that ran it) then `{COMMAND}`, or re-run `lookahead-fastai run {name}` and "
               f"`lookahead-fastai report {name}`")
        messages.append(f"{rel} differs from what lookahead_fastai/results/report.py writes from the experiment's "
                        f"code now ({', '.join(what)}); {fix}")
    return messages


def report_warnings(root=ROOT, differences=None):
    """Stale reports that ``make regenerate`` cannot rebuild (no raw results committed)."""
    return _report_messages(root, with_raw_results=False, differences=differences)


STALE_MARK = "> **Out of date.**"


def stale_banner(name, what):
    return (f"{STALE_MARK} Written by an earlier version of this experiment's code, which now differs in: "
            f"{', '.join(what)}. Its numbers are kept for the record only: they are not a current result, and "
            f"its raw results were not kept. To replace it: `lookahead-fastai run {name} --scale cpu`, "
            f"`lookahead-fastai store export {name}`, `{COMMAND}`.")


def mark_stale_reports(root=ROOT, write=True, differences=None):
    """Put (or renew) :func:`stale_banner` under the title of each report that differs from its code
    and has no committed raw results, so that a reader who opens it sees that first; the paths changed
    (``write=False``: the paths that would change, nothing written)."""
    root = Path(root)
    changed = []
    for rel, name, what in _stale_reports(root, False, differences):
        path = root / rel
        lines = path.read_text().splitlines()
        if len(lines) > 3 and lines[2].startswith(STALE_MARK):  # "# title", "", banner, "", ...
            del lines[2:4]
        text = "\n".join([lines[0], "", stale_banner(name, what), *lines[1:]]) + "\n"
        if text != path.read_text():
            if write:
                path.write_text(text)
            changed.append(path)
    return changed


# ------------------------------------------------------------------------------------------------
# what is generated, and what differs
# ------------------------------------------------------------------------------------------------
def artefacts(root=ROOT):
    """``[(path relative to root, generator, text it writes now)]`` for everything that needs no training."""
    root = Path(root)
    out = []
    for name in build_notebooks().NOTEBOOKS:
        rel = f"notebooks/{name}.ipynb"
        out.append((rel, "notebooks/build_notebooks.py", notebook_text(name, _committed_json(root / rel))))
    out.append(("environment.yml", "lookahead_fastai/regenerate.py from pyproject.toml", environment_yml(root)))
    readme = (root / "README.md").read_text()
    out.append(("README.md", "lookahead_fastai/regenerate.py (" + "; ".join(
        f"block '{n}' from {src}" for n, (_, src) in README_BLOCKS.items()) + ")", readme_text(readme, root)))
    return out


def _same(rel, committed, expected):
    if rel.endswith(".ipynb"):  # as JSON: key order and indentation are nbformat's business
        try:
            return json.loads(committed) == json.loads(expected)
        except ValueError:
            return False
    return committed == expected


def _out_of_step(root):
    """(path relative to root, generator, committed text or None, generated text) of each artefact whose
    committed file is missing or differs from what its generator writes now."""
    for rel, generator, expected in artefacts(root):
        path = root / rel
        committed = path.read_text() if path.exists() else None
        if committed is None or not _same(rel, committed, expected):
            yield rel, generator, committed, expected


def stale(root=ROOT):
    """One message per committed file that differs from what its generator writes now (none: all in step)."""
    root = Path(root)
    messages = []
    for rel, generator, committed, expected in _out_of_step(root):
        diff = "" if committed is None else "".join(list(difflib.unified_diff(
            committed.splitlines(True), expected.splitlines(True), f"{rel} (committed)", f"{rel} (generated)",
            n=1))[:40])
        messages.append(f"{rel} {'is missing' if committed is None else 'differs from'} what {generator} "
                        f"writes now; run `{COMMAND}`\n{diff}")
    differences = report_differences(root)  # one pass over the reports serves both checks below
    messages += _report_messages(root, with_raw_results=True, differences=differences)
    messages += [f"{path.relative_to(root)} lacks its out-of-date banner (or it names old differences); run "
                 f"`{COMMAND}`" for path in mark_stale_reports(root, write=False, differences=differences)]
    return messages


def index_scale(files):
    """The scale ``reports/README.md`` indexes: ``cpu`` (the committed reports') when the raw results
    hold cpu runs, else the largest scale they hold."""
    from .experiments import SCALES
    present = {json.loads(line)["record"]["scale"] for f in files for line in Path(f).read_text().splitlines()
               if line.strip()}
    return "cpu" if "cpu" in present or not present else max(present, key=SCALES.index)


def regenerate_reports(root=ROOT, log=print):
    """``reports/EXP.md`` (+ plots) and ``reports/README.md`` from ``reports/data/EXP.jsonl``, through a
    temporary store; nothing when there are no raw results committed."""
    from .results.index import write_index
    from .results.report import write_report
    from .store import ResultsStore
    from .sweep import lr_find_path
    root = Path(root)
    files = sorted((root / "reports" / "data").glob("*.jsonl"))
    if not files:
        log("reports: no raw results committed (reports/data/*.jsonl), reports left as they are")
        return []
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        store_path, out = Path(tmp) / "results.sqlite", Path(tmp) / "reports"
        with ResultsStore(store_path) as store:
            for f in files:
                store.import_jsonl(f)
        for curve in sorted((root / "reports" / "data" / "lr_find").glob("*.json")):  # EXP_SCALE.json
            target = lr_find_path(store_path, *curve.stem.rsplit("_", 1))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(curve, target)
        for f in files:
            write_report(store_path, f.stem, out_dir=out, source=f.relative_to(root).as_posix())
        write_index(store_path, out_dir=out, scale=index_scale(files))
        for new in sorted(out.iterdir()):  # only what changed: an unchanged report keeps its date line
            old = root / "reports" / new.name
            if not (old.exists() and _unchanged(old, new)):
                shutil.copy(new, old)
                written.append(old)
    for path in written:
        log(f"wrote {Path(path).relative_to(root)}")
    return written


def _unchanged(old, new):
    """Whether a report (or figure) written again says the same: equal bytes, or equal text once the
    "Generated <date> UTC by ..." line is set aside."""
    a, b = old.read_bytes(), new.read_bytes()
    if a == b or new.suffix != ".md":
        return a == b
    def body(text):
        return [line for line in text.decode().splitlines() if not line.startswith("Generated ")]
    return body(a) == body(b)


def regenerate(root=ROOT, log=print):
    """Write every artefact that differs from its generator's output, then the reports; the paths written."""
    root = Path(root)
    written = []
    for rel, _, _, expected in _out_of_step(root):
        path = root / rel
        path.write_text(expected)
        written.append(path)
        log(f"wrote {rel}")
    written += regenerate_reports(root, log)
    differences = report_differences(root)  # after the rebuild; the banner itself changes no section
    for path in mark_stale_reports(root, differences=differences):
        written.append(path)
        log(f"marked {path.relative_to(root)} out of date")
    if not written:
        log("everything generated is in step")
    for message in report_warnings(root, differences):
        log("not rebuilt: " + message)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lookahead_fastai.regenerate", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only list the stale files (exit code 1 if any)")
    args = parser.parse_args(argv)
    if args.check:
        messages = stale()
        print("\n".join(messages) or "everything generated is in step")
        for message in report_warnings():
            print("not rebuilt by make regenerate: " + message)
        return 1 if messages else 0
    regenerate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
