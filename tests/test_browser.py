"""The explorers as a user meets them: JupyterLab in a real Chromium, Run All, then move the widgets.

Debian's chromium (`apt-get install chromium`; `.ci/run` installs it) driven by PyPI playwright through
`executable_path` (playwright's own browser download is not needed). JupyterLab serves a scratch copy of the
notebooks on a free localhost port, so nothing is written into `nbs/`. On failure a screenshot is saved to the test's
temporary folder and its path is in the message. Outside CI, a machine without chromium skips these tests; in CI
(`CI` set) a missing browser fails them."""
import os, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')

def _need_browser():
    try: import playwright.sync_api  # noqa: F401
    except ImportError: playwright_ok = False
    else: playwright_ok = True
    if CHROMIUM and playwright_ok: return
    why = f"chromium: {CHROMIUM or 'missing (apt-get install chromium)'}, playwright: {playwright_ok}"
    if os.environ.get('CI'): pytest.fail(f'CI runs the browser tests: {why}')
    pytest.skip(why)

def _free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

@pytest.fixture(scope='module')
def lab(tmp_path_factory, cache):
    "A JupyterLab server on a scratch copy of the notebooks: (base URL, its folder)."
    _need_browser()
    work = tmp_path_factory.mktemp('lab')
    shutil.copytree(ROOT/'nbs', work/'nbs')
    shutil.copytree(ROOT/'configs', work/'configs')
    port = _free_port()
    env = dict(os.environ, HERA_CACHE=str(cache), OMP_NUM_THREADS='1', JUPYTER_CONFIG_DIR=str(work/'.jupyter'))
    proc = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', f'--port={port}', '--ip=127.0.0.1',
                             '--allow-root', '--IdentityProvider.token=', '--ServerApp.password=',
                             f'--ServerApp.root_dir={work/"nbs"}', '--LabApp.news_url=None',
                             '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate'],
                            stdout=open(work/'lab.log', 'w'), stderr=subprocess.STDOUT, env=env)
    url = f'http://127.0.0.1:{port}'
    for _ in range(120):
        try:
            urllib.request.urlopen(f'{url}/api/status', timeout=1)
            break
        except OSError: time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f'JupyterLab did not start: {(work/"lab.log").read_text()[-2000:]}')
    yield url, work
    proc.terminate()
    proc.wait(timeout=20)

@pytest.fixture
def page(lab, tmp_path):
    "A fresh Chromium page; a screenshot is saved if the test fails."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox', '--disable-gpu'])
        pg = browser.new_page(viewport={'width': 1500, 'height': 1000})
        pg.set_default_timeout(60_000)
        pg.shot = tmp_path/'failure.png'
        yield pg
        browser.close()

def _settle(page, seconds:float=60):
    """Accept JupyterLab's 'Select Kernel' dialog whenever it comes (it can, while the kernel list loads), until the
    notebook's kernel has been idle with no dialog for 3 s."""
    quiet, end = 0, time.time() + seconds
    while time.time() < end and quiet < 3:
        if page.locator('.jp-Dialog').count():
            page.click('.jp-Dialog button.jp-mod-accept')
            quiet = 0
        elif page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count(): quiet += 1
        else: quiet = 0
        page.wait_for_timeout(1_000)

def run_all(page, url:str, notebook:str):
    "Open a notebook in JupyterLab (a fresh workspace), Run All, wait until the kernel is idle."
    page.goto(f'{url}/lab/tree/{notebook}?reset')
    page.wait_for_selector('.jp-Notebook .jp-Cell', timeout=120_000)
    _settle(page)
    page.click('text=Run', timeout=30_000)                    # the menu bar's Run menu
    page.click('text=Run All Cells')
    page.wait_for_timeout(2_000)
    _settle(page, 600)

def figure_png(page, widget)->str:
    "The source of the last figure drawn in an explorer's output area."
    imgs = widget.locator('.jp-OutputArea-output img')
    try: imgs.last.wait_for(timeout=60_000)
    except Exception as e: check(page, False, f'no figure in the explorer: {e}')
    return imgs.last.get_attribute('src')

def check(page, ok:bool, what:str):
    if not ok:
        page.screenshot(path=str(page.shot), full_page=True)
        pytest.fail(f'{what} (screenshot: {page.shot})')

def no_widget_errors(page):
    text = page.inner_text('.jp-Notebook')
    check(page, 'Error displaying widget' not in text, '"Error displaying widget" on the page')
    check(page, 'Traceback' not in text, 'a traceback on the page')

def test_mknn_explorer_follows_k_and_layer(lab, page):
    url, _ = lab
    run_all(page, url, '09_select.ipynb')
    no_widget_errors(page)
    explorer = page.locator('.widget-vbox').filter(has=page.locator('.widget-dropdown')).last
    first = figure_png(page, explorer)
    slider = explorer.locator('.widget-slider .noUi-handle, .widget-slider .ui-slider-handle').first
    slider.focus()
    page.keyboard.press('ArrowLeft')
    page.wait_for_timeout(3_000)
    moved_k = figure_png(page, explorer)
    check(page, moved_k != first, 'the figure did not change when k moved')
    select = explorer.locator('.widget-dropdown select').first
    select.select_option(label='2')
    page.wait_for_timeout(3_000)
    layer2 = figure_png(page, explorer)
    check(page, layer2 != moved_k, 'the figure did not change when the layer moved')
    select.select_option(label='all layers')
    page.wait_for_timeout(3_000)
    shown = select.evaluate('e => e.selectedIndex < 0 ? "" : e.options[e.selectedIndex].text')
    check(page, shown.replace('\xa0', ' ') == 'all layers', f'the dropdown shows {shown!r} after choosing "all layers" again')
    check(page, figure_png(page, explorer) != layer2, 'the figure did not change back to all layers')
    no_widget_errors(page)

def test_neighbourhood_explorer_follows_sample_and_k(lab, page):
    url, _ = lab
    run_all(page, url, '08_neighbourhoods.ipynb')
    no_widget_errors(page)
    explorer = page.locator('.widget-vbox').filter(has=page.locator('.widget-slider')).last
    first = figure_png(page, explorer)
    handles = explorer.locator('.widget-slider .noUi-handle, .widget-slider .ui-slider-handle')
    handles.nth(0).focus()                                    # sample
    page.keyboard.press('ArrowRight')
    page.wait_for_timeout(3_000)
    moved = figure_png(page, explorer)
    check(page, moved != first, 'the figure did not change when the sample moved')
    handles.nth(1).focus()                                    # k
    page.keyboard.press('ArrowLeft')
    page.wait_for_timeout(5_000)
    check(page, figure_png(page, explorer) != moved, 'the figure did not change when k moved')
    no_widget_errors(page)
