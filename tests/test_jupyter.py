"""The notebooks as a user meets them: ``make lab`` serves them with the project's kernel; a real
Jupyter server runs ``start_off`` and ``imagenette`` through its REST and kernel websocket API (as
JupyterLab does); JupyterLab in headless Chromium runs ``quickstart`` and shows its table and plots.

One JupyterLab, started with ``make lab`` on copies of the notebooks (smoke-scale parameters
injected after each parameters cell, results in a temporary store), serves every test here."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest
import websocket
from notebook_tools import ROOT, has_image, html, markdown, outputs, smoke_parameters, with_parameters

from lookahead_fastai.experiments import get_experiment
from lookahead_fastai.notebook import KERNEL_DISPLAY_NAME, KERNEL_NAME

pytestmark = pytest.mark.slow  # a Jupyter server and a browser: `make test` runs it, `make check` does not

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = ROOT / "runs" / "screenshots" / "jupyterlab_quickstart.png"
SERVER_START_S = 120
QUICKSTART_SEEDS = 2
CELL_TIMEOUT_S = 420


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server started by ``make lab``, and its REST API."""

    def __init__(self, root, notebooks, log):
        self.root, self.notebooks, self.log = root, notebooks, log
        self.port, self.token = _free_port(), uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{self.port}"
        home = root / "jupyter"  # the user's Jupyter folders, kept out of $HOME
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
               "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(home / "lab-workspaces")}
        venv = Path(sys.prefix)
        lab_args = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={self.port} --ServerApp.port_retries=0 "
                    f"--IdentityProvider.token={self.token}")
        # -o: never (re)install the venv from a test; the kernel registration in `lab` still runs
        cmd = ["make", "-s", "-C", str(ROOT), "-o", str(venv / ".installed-stamp"), "lab", f"VENV={venv}",
               f"LAB_DIR={notebooks}", f"LAB_ARGS={lab_args}"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def log_tail(self, n=3000):
        return self.log.read_text(errors="replace")[-n:]

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def wait_ready(self):
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"`make lab` exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return self.request("GET", "/api/status")
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{self.log_tail()}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # make and the jupyter server it started
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("lab")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    params = smoke_parameters(root / "runs" / "results.sqlite", shared_data)
    for name in ("start_off", "imagenette"):
        with_parameters(name, params, notebooks)
    # the quickstart's demo grid at smoke scale, 2 seeds (the fewest that give paired intervals)
    with_parameters("quickstart", smoke_parameters(root / "runs" / "results.sqlite", shared_data, seeds=QUICKSTART_SEEDS),
                    notebooks)
    # no "get notified about Jupyter news?" toast over the screenshot
    settings = root / "jupyter" / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    server = Lab(root, notebooks, root / "lab.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_make_lab_serves_the_notebooks_with_the_project_kernel(lab):
    specs = lab.request("GET", "/api/kernelspecs")
    assert KERNEL_NAME in specs["kernelspecs"], sorted(specs["kernelspecs"])
    spec = specs["kernelspecs"][KERNEL_NAME]["spec"]
    assert spec["display_name"] == KERNEL_DISPLAY_NAME
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()  # this venv's Python
    listing = {item["name"] for item in lab.request("GET", "/api/contents/")["content"]}
    assert {"quickstart.ipynb", "start_off.ipynb", "imagenette.ipynb"} <= listing
    model = lab.request("GET", "/api/contents/quickstart.ipynb")
    assert model["type"] == "notebook" and model["content"]["metadata"]["kernelspec"]["name"] == KERNEL_NAME


# ------------------------------------------------------------------------------------------------
# the server's kernel API, driven as JupyterLab drives it
# ------------------------------------------------------------------------------------------------
class KernelChannel:
    """The kernel websocket of a session (``/api/kernels/<id>/channels``), JSON messages."""

    def __init__(self, lab, kernel_id):
        self.session = uuid.uuid4().hex
        self.shown = []  # every HTML the kernel displayed or redrew, in order
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels?session_id={self.session}",
            header=[f"Authorization: token {lab.token}"], timeout=30)

    def execute(self, code, timeout=CELL_TIMEOUT_S):
        """Run ``code``; returns (outputs as nbformat outputs, execute_reply content). Display updates
        (fastprogress redraws its bar with ``update_display_data``) are applied as a front end does."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": self.session,
                       "username": "test", "version": "5.3", "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        outs, displays, reply, idle = [], {}, None, False
        deadline = time.monotonic() + timeout
        while reply is None or not idle:
            if time.monotonic() > deadline:
                pytest.fail(f"cell did not finish within {timeout} s:\n{code}")
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg["content"]
            if msg["channel"] == "shell" and kind == "execute_reply":
                reply = content
            elif kind == "status":
                idle = idle or content["execution_state"] == "idle"
            elif kind in ("stream", "display_data", "execute_result", "error"):
                self.shown.append(content.get("data", {}).get("text/html", ""))
                display_id = content.get("transient", {}).get("display_id")
                outs.append(nbformat.v4.output_from_msg(msg))
                if display_id:
                    displays.setdefault(display_id, []).append(len(outs) - 1)
            elif kind == "update_display_data":
                self.shown.append(content["data"].get("text/html", ""))
                for i in displays.get(content.get("transient", {}).get("display_id"), []):
                    outs[i]["data"], outs[i]["metadata"] = content["data"], content.get("metadata", {})
            elif kind == "clear_output":
                outs, displays = [], {}
        return outs, reply

    def close(self):
        self.ws.close()


@pytest.mark.parametrize("name", ["start_off", "imagenette"])
def test_jupyter_server_runs_notebook_through_its_kernel_api(lab, name):
    path = f"{name}.ipynb"
    nb = nbformat.from_dict(lab.request("GET", f"/api/contents/{path}")["content"])
    session = lab.request("POST", "/api/sessions", {"path": path, "name": path, "type": "notebook",
                                                    "kernel": {"name": nb.metadata.kernelspec.name}})
    assert session["kernel"]["name"] == KERNEL_NAME
    channel = KernelChannel(lab, session["kernel"]["id"])
    try:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            cell.outputs, reply = channel.execute(cell.source)
            cell.execution_count = reply.get("execution_count")
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert reply["status"] == "ok", (cell.source, [e.get("traceback") for e in errors])
    finally:
        channel.close()
        lab.request("DELETE", f"/api/sessions/{session['id']}")
    lab.request("PUT", f"/api/contents/{path}", {"type": "notebook", "format": "json", "content": nb})  # save

    saved = nbformat.from_dict(lab.request("GET", f"/api/contents/{path}")["content"])
    # while the grid ran: fastprogress's HTML bar, redrawn as runs finished, over a table of runs
    bars = [h for h in channel.shown if "<progress" in h]
    assert len(bars) >= 3 and any("seconds" in h and "seed" in h for h in bars), len(bars)
    outs = outputs(saved)
    shown = html(outs)
    grid_cell = next(c for c in saved.cells if "run_grid(" in c.source)
    n_runs = len(get_experiment(name).specs("smoke"))  # one seed
    assert html(grid_cell.outputs).count("<tr>") == n_runs + 1  # the finished runs' table, kept after the bar
    assert "final accuracy" in shown  # summary table
    assert "mean difference" in shown  # paired differences
    if get_experiment(name).deviations:  # a Markdown heading over the table
        assert "Deviations from the original" in markdown(outs) and get_experiment(name).deviations[0].what in shown
    assert has_image(outs)  # learning curves, inline
    assert not [o for o in outs if o.output_type == "error"]


# ------------------------------------------------------------------------------------------------
# JupyterLab in a real browser
# ------------------------------------------------------------------------------------------------
SEE_PROGRESS_BARS = """() => {
    window.progressBarsSeen = 0;
    const seen = new WeakSet();
    new MutationObserver(() => {
        for (const bar of document.querySelectorAll('.jp-OutputArea-output progress')) {
            const cell = bar.closest('.jp-Cell');  // count cells: an updated output may be redrawn anew
            if (!seen.has(cell)) { seen.add(cell); window.progressBarsSeen++; }
        }
    }).observe(document.body, {childList: true, subtree: true});
}"""
ALL_CELLS_DONE = """() => {
    const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
    if (!cells.length) return false;
    const prompts = cells.map(c => (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '');
    if (prompts.some(p => p.includes('*'))) return false;
    const error = document.querySelector('.jp-Notebook [data-mime-type="application/vnd.jupyter.stderr"]');
    return /\\[\\d+\\]/.test(prompts[prompts.length - 1]) || (error && /Error|Traceback/.test(error.textContent));
}"""


def test_jupyterlab_in_chromium_runs_the_quickstart(lab, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (`apt-get install -y chromium`; "
                    f".ci/run does it when it is missing). This test needs a real browser and is never skipped.")
    from playwright.sync_api import sync_playwright

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 2400})
        page = browser.new_page()
        try:
            page.goto(f"{lab.url}/lab/tree/quickstart.ipynb?token={lab.token}", timeout=120_000)
            page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
            # the notebook opened on the project's kernel (no kernel-choice dialog), which is idle
            page.locator(".jp-NotebookPanel-toolbar", has_text=KERNEL_DISPLAY_NAME).wait_for(timeout=60_000)
            page.wait_for_function("() => !!document.querySelector("
                                   "'.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator[data-status=\"idle\"]')",
                                   timeout=120_000)
            page.evaluate(SEE_PROGRESS_BARS)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            page.wait_for_function(ALL_CELLS_DONE, timeout=CELL_TIMEOUT_S * 1000, polling=1000)
            page.wait_for_timeout(500)  # let the last outputs paint before the screenshot
        finally:
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            print(f"screenshot: {SCREENSHOT}")
        try:
            errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
                                  has_text="Error")
            assert errors.count() == 0, errors.first.inner_text()
            prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt").all_text_contents()
            assert prompts and all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts), prompts  # all ran
            runs = page.locator(".jp-OutputArea-output table", has_text="seconds").first
            assert runs.locator("tr").count() == 1 + 4 * QUICKSTART_SEEDS  # the grid's finished runs
            summary = page.locator(".jp-OutputArea-output table", has=page.locator("caption", has_text="mean ± std"))
            assert summary.count() == 1  # the demo's results table (styled DataFrame)
            text = summary.text_content()
            assert "final accuracy" in text and all(row in text for row in ("SGD", "LA/SGD", "AdamW", "LA/AdamW"))
            assert page.locator(".jp-OutputArea-output table", has_text="mean difference").count() == 1
            # while they ran: the grid's bar and fit_one_cycle's (each gives way to its table at the end)
            assert page.evaluate("window.progressBarsSeen") >= 2
            images = page.locator(".jp-OutputArea-output img")
            assert images.count() >= 2  # learning curves, lr_find's sweep
            widths = images.evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            assert all(w > 100 for w in widths), widths  # the PNGs decoded and drawn
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000


def test_chromium_is_the_debian_package():
    """The browser test uses Debian's chromium, never a browser downloaded by Playwright."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: `apt-get install -y chromium` (.ci/run installs it)"
    version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=60).stdout
    assert version.startswith("Chromium "), version
    assert shutil.which("playwright", path=str(Path(sys.executable).parent))  # the pinned Python package
