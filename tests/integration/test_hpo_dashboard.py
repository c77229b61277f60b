"""``rna-hpc-status --dashboard``: optuna-dashboard on a staged search's storage, opened in headless Chromium.

The search is the sweeper tests' two-stage smoke search with its 2-seed refit (three studies), on the journal file
and on a fresh PostgreSQL database. The dashboard finds the storage from the sweep dir alone. The browser is Debian's
``chromium`` driven through ``chromium-driver`` by selenium; every wait is bounded. Screenshots: the test's tmp dir.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from hpo_app.harness import env, run_app

from rna_hpc.hpo.storage import make_storage, read_storage_record

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]
WAIT_S = 60


def interruptible() -> None:
    """Ctrl-C as in a terminal, also when the suite runs in the background (``cmd &`` starts it with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def dashboard(sweep: Path, log: Path) -> Iterator[str]:
    """``rna-hpc-status --dashboard <sweep> --port 0`` running; yields the URL it printed, Ctrl-C at the end."""
    status = Path(sys.executable).with_name("rna-hpc-status")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(status), "--dashboard", str(sweep), "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env(),
            preexec_fn=interruptible,
        )
    try:
        deadline = time.monotonic() + WAIT_S
        while not (found := re.search(r"at (http://\S+) \(Ctrl-C stops it\)", log.read_text())):
            assert proc.poll() is None, f"the dashboard exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no URL after {WAIT_S}s: {log.read_text()[-2000:]}"
            time.sleep(0.2)
        yield found.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log.read_text()[-2000:]  # Ctrl-C ends it cleanly


@contextmanager
def chromium(profile: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def body_text(driver: object) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def wait_for_text(driver: object, texts: list[str], what: str) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, WAIT_S, poll_frequency=0.5).until(lambda d: all(t in body_text(d) for t in texts))
    except TimeoutException:
        pytest.fail(f"{what}: {texts} not all shown after {WAIT_S}s; the page says: {body_text(driver)[:1500]!r}")


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_dashboard_lists_every_stage_study_and_its_trial_count(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sweep = tmp_path / "sweep"
    storage = [f"hydra.sweeper.storage={request.getfixturevalue('postgres_url')}"] if kind == "postgresql" else []
    out = run_app(sweep, "hydra.sweeper.plots=false", *storage)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    spec = read_storage_record(sweep)
    assert spec is not None and (spec.startswith("postgresql+psycopg://") if storage else spec.endswith(".journal"))
    expected = {
        name: len(optuna.load_study(study_name=name, storage=make_storage(spec)).trials)
        for name in optuna.get_all_study_names(make_storage(spec))
    }
    assert set(expected) == {"smoke-s0", "smoke-s1", "smoke-refit"} and expected["smoke-refit"] == 2

    with dashboard(sweep, tmp_path / "dashboard.log") as url, chromium(tmp_path / "chromium-profile") as driver:
        driver.get(url)
        wait_for_text(driver, sorted(expected), "the study list")
        driver.save_screenshot(str(tmp_path / "studies.png"))
        cards = driver.execute_script(
            "return Array.from(document.querySelectorAll('a[href*=\"/dashboard/studies/\"]'))"
            ".map(a => [a.href, a.innerText])"
        )
        links = {name: href for href, text in cards for name in expected if re.search(rf"\b{name}\n", text + "\n")}
        assert set(links) == set(expected), cards
        for name, count in expected.items():
            driver.get(links[name] + "/trials")
            wait_for_text(driver, [f"{name} (id=", f"{count} Trials"], f"the trials of {name}")
            driver.save_screenshot(str(tmp_path / f"{name}-trials.png"))
    print(f"screenshots in {tmp_path}")
