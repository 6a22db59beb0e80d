"""pyproject.toml and environment.yml pin the same stack; what is pinned is what is installed."""
import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml

from lookahead_fastai.regenerate import environment_yml, pins

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    """environment.yml is generated from pyproject.toml (`make regenerate`); the committed copy is what
    the generator writes now (also in tests/test_generated.py), and it pins what pyproject pins."""
    assert (ROOT / "environment.yml").read_text() == environment_yml(), \
        ("environment.yml differs from what lookahead_fastai/regenerate.py writes from pyproject.toml; "
         "run `make regenerate`")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = pins(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted.update(pins(extra))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pins(pip_section) == wanted
    assert "-e ." in pip_section


def test_installed_versions_are_the_pinned_ones():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name, pinned in pins(project["dependencies"]).items():
        assert version(name).split("+")[0] == pinned, name


def test_jupyter_comes_with_what_make_installs():
    """`make` installs '.[dev]'; it holds the notebooks extra (JupyterLab included), and what the
    notebook and browser tests drive (Playwright, a websocket client), all installed as pinned."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    notebooks, dev = pins(extras["notebooks"]), pins(extras["dev"])
    assert {"jupyterlab", "ipykernel", "ipywidgets"} <= set(notebooks)
    assert notebooks.items() <= dev.items()
    assert {"playwright", "websocket-client"} <= set(dev)
    for name, pinned in dev.items():
        assert version(name).split("+")[0] == pinned, name
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -e '.[dev]'" in makefile and "\nlab: venv\n" in makefile
    assert "--name lookahead-fastai" in makefile and "jupyter lab" in makefile
