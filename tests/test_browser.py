"""The lab as a learner meets it: `make lab`'s JupyterLab in a real browser, notebooks run by hand.

nbval (`make test`) runs the notebooks' code; this test runs them the way a learner does. It
starts JupyterLab with the command line `make lab` would run (read with `make -n lab`; only the
port is changed and the browser left closed), in a temp copy of the repository's notebooks so
their committed outputs stay as they are, with Jupyter's config, runtime, data and settings
directories in the temp dir too. Headless Debian chromium, driven by Playwright, opens the URL
Jupyter printed (with its token: it must open 00-start-here), then each notebook in NOTEBOOKS:
Run > Run All Cells from the menu, wait until the kernel is idle and every code cell has run,
then check that

* no output area shows stderr (a traceback, an error, a warning), and the notebook, saved from
  the UI, has no error output (ename) and an execution count on every code cell,
* the lines its self-checks print on success are on the page, and no "FAIL" line is,
* its figures were rendered as PNG images the browser loaded, one under the cell that draws
  the ladder diagram.

It takes a screenshot of each notebook scrolled to that cell. With LABCHAT_UPDATE_SCREENSHOTS=1
they are copied to docs/img/ (the README shows the handshake one); otherwise they stay in the
test's temp dir. At the end no process of the server, its kernels or the browser is left.

Needs /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it) and the `playwright`
package (test extras) -- never `playwright install`: no browser is downloaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from jupyterlab_process import (
    JupyterLab,
    alive,
    descendants,
    free_port,
    isolated_env,
    kill_tree,
    processes_mentioning,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "docs" / "img"
UPDATE_ENV = "LABCHAT_UPDATE_SCREENSHOTS"

#: Flags for a closed network: nothing phones home, nothing is fetched in the background.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # root in CI; the sandbox needs a user namespace setup we do not have
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
]

#: Seconds one notebook may take from Run All Cells to an idle kernel with every cell run.
RUN_TIMEOUT = 120.0
RESTART_AFTER = 10.0


@dataclass(frozen=True)
class Notebook:
    """A notebook to run, and what its page must show afterwards."""

    name: str
    #: What its self-check cells print when they pass: each must start a line of output.
    #: Besides, no output line may start with "FAIL" or "self-check failed".
    checks: tuple[str, ...]
    #: How many figures (PNG images) at least.
    min_images: int
    #: Text in the source of the cell that draws the figure to screenshot (the ladder).
    figure_cell: str
    #: Screenshot file name in docs/img/.
    screenshot: str


NOTEBOOKS = [
    Notebook(
        name="01-watch-a-tcp-handshake.ipynb",
        checks=(
            "ok   SYN carries no ACK flag",
            "ok   SYN-ACK ack = client ISN + 1",
            "ok   ACK ack = server ISN + 1",
            "self-check passed: SYN, SYN-ACK, ACK with ack = ISN + 1 on both sides",
            "self-check passed: MSS, SACK-permitted, timestamps and window scale negotiated"
            " in the SYN and SYN-ACK",
            "connect() succeeded: True after",
            "retransmissions in alice's connection: 0",
        ),
        min_images=2,  # the TCP header diagram and the ladder
        figure_cell="plots.ladder(conn",
        screenshot="01-watch-a-tcp-handshake.png",
    ),
    Notebook(
        name="03-negotiate-tls.ipynb",
        checks=(
            "self-check passed: SNI in clear, version and suite chosen from what the client"
            " offered",
            "self-check passed: TLS 1.3 saves a round trip",
            "self-check passed: 1.2 shows the certificate to everyone, 1.3 only to whoever holds"
            " the keys",
            "self-check passed: the client refused all three servers, each for its own reason",
            "self-check passed: the TLS 1.2 ClientKeyExchange carries an ephemeral ECDH public key",
        ),
        min_images=1,  # TLS 1.2 and 1.3 ladders side by side
        figure_cell="plots.tls_comparison(",
        screenshot="03-negotiate-tls.png",
    ),
]

DEFAULT_NOTEBOOK = "00-start-here.ipynb"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no {CHROMIUM}: `apt-get install chromium` for the browser test (.ci/run does)",
)


# --------------------------------------------------------------------------------------------
# `make lab`, as the Makefile says it


def make_lab_commands(port: int) -> list[list[str]]:
    """The commands of `make lab` (`make -n`), with this interpreter, `port` and no browser.

    Only the recipe's own lines (labchat init, jupyter lab) are returned; the `setup`
    prerequisite is already done by whoever runs this test.
    """
    venv = Path(sys.prefix)
    # Under `make test` the parent's MAKEFLAGS/MAKELEVEL would leak in (and with them
    # "Entering directory" lines): this is a make of its own.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(
        [
            "make",
            "-s",
            "-n",
            "--no-print-directory",
            "-C",
            str(REPO),
            "lab",
            f"VENV={venv}",
            f"PY={sys.executable}",
            f"JUPYTER_PORT={port}",
            "JUPYTER_ARGS=--no-browser",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    ).stdout
    lines = out.replace("\\\n", " ").splitlines()
    commands = [shlex.split(line) for line in lines if line.strip()]
    return [c for c in commands if "labchat" in c or "lab" in c[1:2]]


def test_make_lab_runs_init_then_jupyter_lab_on_00_start_here() -> None:
    init, lab = make_lab_commands(8888)
    assert init[1:] == ["-m", "labchat", "init"]
    assert Path(lab[0]).name == "jupyter" and lab[1] == "lab"
    assert "--notebook-dir=notebooks" in lab
    assert f"--LabApp.default_url=/lab/tree/{DEFAULT_NOTEBOOK}" in lab
    assert (NOTEBOOK_DIR / DEFAULT_NOTEBOOK).is_file()
    assert "--ServerApp.port=8888" in lab
    if os.geteuid() == 0:  # Jupyter refuses to run as root without it
        assert "--allow-root" in lab


# --------------------------------------------------------------------------------------------
# fixtures: a temp copy of the lab, JupyterLab on it, a browser


def _write_lab_settings(settings_dir: Path) -> None:
    """JupyterLab user settings for the test run (in its isolated settings dir)."""
    import json

    settings = {
        # Render every cell, also those scrolled out of view, so all outputs can be checked.
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        # No "get news?" toast in the screenshots, no fetching from outside.
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for plugin, values in settings.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _ignore_checkpoints(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n == ".ipynb_checkpoints"]


@contextlib.contextmanager
def running_lab(tmp_path: Path) -> Iterator[JupyterLab]:
    """JupyterLab as `make lab` starts it, on a temp copy of the notebooks; stopped at exit.

    `labchat init` runs in the copy too (certificates and demo accounts in its certs/).
    """
    work = tmp_path / "repo"
    shutil.copytree(NOTEBOOK_DIR, work / "notebooks", ignore=_ignore_checkpoints)
    env = isolated_env(tmp_path / "jupyter")
    _write_lab_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))
    init, lab_argv = make_lab_commands(free_port())
    subprocess.run(init, cwd=work, env=env, check=True, capture_output=True, timeout=60)
    lab = JupyterLab.start(lab_argv, cwd=work, env=env, log_path=tmp_path / "jupyter.log")
    try:
        yield lab
    finally:
        survivors = lab.stop()
        assert not survivors, f"processes left after stopping JupyterLab: {survivors}"


@contextlib.contextmanager
def browser_page(tmp_path: Path) -> Iterator[Page]:
    """A page in headless Debian chromium with a fresh profile; the browser is gone at exit."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path / "chromium-profile"
    pw = sync_playwright().start()
    context = None
    try:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000},
            device_scale_factor=1,
        )
        context.set_default_timeout(30_000)
        page = context.pages[0] if context.pages else context.new_page()
        yield page
    finally:
        try:
            if context is not None:
                context.close()
        finally:
            pw.stop()
            # Whatever of the browser is still there (it should not be): end it, then fail.
            left = processes_mentioning(str(profile))
            kill_tree(left)
            assert not left, f"chromium processes left after closing the browser: {left}"


# --------------------------------------------------------------------------------------------
# driving JupyterLab


CURRENT_PANEL = "#jp-main-dock-panel .jp-NotebookPanel:not(.lm-mod-hidden)"
CURRENT_TAB = "#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel"


def _current_tab(page: Page) -> str:
    return page.locator(CURRENT_TAB).first.inner_text().strip()


def _wait_for_notebook(page: Page, name: str) -> Locator:
    """Wait until `name` is the open tab and its kernel is idle; return its panel."""
    page.wait_for_function(
        "([selector, name]) => document.querySelector(selector)?.textContent.trim() === name",
        arg=[CURRENT_TAB, name],
        timeout=60_000,
    )
    # The toolbar's indicator says "idle" already while the kernel is still starting; the
    # status bar's kernel item names the kernel only once it is connected.
    page.wait_for_function(
        """() => {
            const bar = document.querySelector('#jp-main-statusbar')?.innerText ?? '';
            return /Python 3[^\\n]*\\|\\s*Idle/.test(bar) && !bar.includes('No Kernel');
        }""",
        timeout=60_000,
    )
    return page.locator(CURRENT_PANEL)


def _code_cells_to_run(path: Path) -> int:
    """How many code cells of the notebook have source (JupyterLab skips empty ones)."""
    nb = json.loads(path.read_text())
    return sum(1 for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip())


def _run_all_cells(page: Page, panel: Locator, expected: int, lab: JupyterLab) -> float:
    """Run > Run All Cells, then wait until every cell ran (or one failed) and all is idle.

    A Run All issued while the new notebook's kernel is still connecting is dropped by
    JupyterLab (every prompt stays "[ ]:", seen once in CI). If nothing at all has started
    after RESTART_AFTER seconds, the menu command is given again, at most twice.
    """

    def click_run_all() -> None:
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        run_all = page.locator('.lm-Menu-item[data-command="runmenu:run-all"]')
        assert run_all.inner_text().strip().startswith("Run All Cells"), run_all.inner_text()
        run_all.click()

    click_run_all()
    start = clicked = time.monotonic()
    retries = 0
    prompts = panel.locator(".jp-CodeCell .jp-InputPrompt")
    while True:
        lab.remember_children()  # capture helpers, servers: stop() ends them all
        texts = [t.strip() for t in prompts.all_inner_texts()]
        running = sum(1 for t in texts if t == "[*]:")
        done = sum(1 for t in texts if re.fullmatch(r"\[\d+\]:", t))
        idle = panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count()
        idle = idle and "| Idle" in page.locator("#jp-main-statusbar").inner_text()
        errors = panel.locator(ERROR_OUTPUTS).count()
        if idle and not running and (done >= expected or errors):
            return time.monotonic() - start
        nothing_started = idle and not running and done == 0
        if nothing_started and time.monotonic() - clicked > RESTART_AFTER and retries < 2:
            retries += 1
            click_run_all()
            clicked = time.monotonic()
        if time.monotonic() - start > RUN_TIMEOUT:
            pytest.fail(
                f"cells still running after {RUN_TIMEOUT} s: {done}/{expected} done, "
                f"{running} running, prompts {texts}"
            )
        time.sleep(0.25)


ERROR_OUTPUTS = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


def _output_lines(panel: Locator) -> list[str]:
    lines: list[str] = []
    for text in panel.locator(".jp-OutputArea-output").all_inner_texts():
        lines.extend(line.strip() for line in text.splitlines())
    return lines


def _loaded_png_images(panel: Locator) -> list[dict[str, object]]:
    """The output areas' images: src kind, size as loaded by the browser."""
    return panel.locator(".jp-OutputArea-output img").evaluate_all(
        """imgs => imgs.map(img => ({
            src: img.src.slice(0, 22),
            complete: img.complete,
            width: img.naturalWidth,
            height: img.naturalHeight,
        }))"""
    )


def _saved_notebook(page: Page, lab: JupyterLab, name: str) -> dict:
    """Save the notebook from the UI (Ctrl+S) and read what the server wrote."""
    before = lab.api(f"contents/{name}?content=0")["last_modified"]
    page.locator(CURRENT_PANEL).locator(".jp-Notebook").click(position={"x": 5, "y": 5})
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while lab.api(f"contents/{name}?content=0")["last_modified"] == before:
        assert time.monotonic() < deadline, f"{name} was not saved"
        time.sleep(0.2)
    return lab.api(f"contents/{name}")["content"]


def _collapse_left_sidebar(page: Page) -> None:
    current = page.locator("#jp-left-stack:not(.lm-mod-hidden)")
    if current.count():
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()
        current.wait_for(state="detached")


@contextlib.contextmanager
def _evidence(page: Page, tmp_path: Path) -> Iterator[None]:
    """On failure, keep a screenshot and the page's HTML next to jupyter.log for a look."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=tmp_path / "failure.png", full_page=True)
            (tmp_path / "failure.html").write_text(page.content())
            print(f"browser test failed: see {tmp_path}/failure.png, failure.html, jupyter.log")
        raise


# --------------------------------------------------------------------------------------------
# the test


@needs_chromium
@pytest.mark.timeout(240)
def test_lab_runs_the_notebooks_in_a_browser(tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    durations: dict[str, float] = {}
    ours_before = set(descendants(os.getpid()))
    with running_lab(tmp_path) as lab, browser_page(tmp_path) as page, _evidence(page, tmp_path):
        # `make lab` prints a URL with the token that opens the start notebook.
        printed = urllib.parse.urlsplit(lab.printed_url)
        assert printed.path == f"/lab/tree/{DEFAULT_NOTEBOOK}", lab.printed_url
        assert re.fullmatch(r"token=[0-9a-f]{32,}", printed.query), lab.printed_url
        assert printed.hostname in ("localhost", "127.0.0.1")
        page.goto(lab.printed_url)
        _wait_for_notebook(page, DEFAULT_NOTEBOOK)

        for nb in NOTEBOOKS:
            page.goto(lab.lab_url(nb.name))
            panel = _wait_for_notebook(page, nb.name)
            expected = _code_cells_to_run(NOTEBOOK_DIR / nb.name)
            durations[nb.name] = _run_all_cells(page, panel, expected, lab)

            errors = panel.locator(ERROR_OUTPUTS).all_inner_texts()
            assert not errors, f"{nb.name}: cells wrote to stderr:\n" + "\n---\n".join(errors)
            lines = _output_lines(panel)
            missing = [c for c in nb.checks if not any(line.startswith(c) for line in lines)]
            assert not missing, f"{nb.name}: self-check lines not on the page: {missing}"
            failed = [line for line in lines if line.startswith(("FAIL", "self-check failed"))]
            assert not failed, f"{nb.name}: self-checks failed: {failed}"

            images = _loaded_png_images(panel)
            good = [
                i
                for i in images
                if i["complete"]
                and i["width"]
                and str(i["src"]).startswith(("data:image/png", "blob:"))
            ]
            assert len(good) >= nb.min_images, f"{nb.name}: figures rendered: {images}"

            cell = panel.locator(".jp-CodeCell", has_text=nb.figure_cell)
            figure = cell.locator(".jp-OutputArea-output img")
            assert figure.count() >= 1, (
                f"{nb.name}: no image under the cell with {nb.figure_cell!r}"
            )
            _collapse_left_sidebar(page)  # room for the notebook in the screenshot
            # The cell's code at the top, its figure (taller than the window) below it.
            cell.first.evaluate("cell => cell.scrollIntoView({block: 'start'})")
            page.mouse.move(0, 0)
            page.wait_for_timeout(300)  # let the scroll settle before the picture
            page.screenshot(path=shots / nb.screenshot)

            saved = _saved_notebook(page, lab, nb.name)
            code = [c for c in saved["cells"] if c["cell_type"] == "code" and c["source"].strip()]
            enames = [o["ename"] for c in code for o in c["outputs"] if o["output_type"] == "error"]
            assert not enames, f"{nb.name}: errors in the saved notebook: {enames}"
            unrun = [i for i, c in enumerate(code) if c["execution_count"] is None]
            assert not unrun, f"{nb.name}: code cells not run: {unrun}"

    # Server, kernels, their children, the browser and Playwright's driver: all gone.
    assert lab.seen, "no kernel was ever seen below the server"
    assert not [p for p in lab.seen if alive(p)], "kernels or their children outlived the server"
    assert processes_mentioning(str(tmp_path)) == []
    left = set(descendants(os.getpid())) - ours_before
    assert not left, f"processes this test started are still running: {left}"
    if os.environ.get(UPDATE_ENV) == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for nb in NOTEBOOKS:
            shutil.copyfile(shots / nb.screenshot, SCREENSHOTS / nb.screenshot)
    print("run all cells took", {k: f"{v:.1f} s" for k, v in durations.items()})
