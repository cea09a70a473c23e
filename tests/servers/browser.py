"""A real headless Chromium, driven through selenium, for the dashboard's tests.

The ``browser`` fixture starts Debian's ``chromium`` with its ``chromedriver`` once per
test session (``scripts/install-browser`` installs both), or skips with the reason when
either, or selenium, is missing. selenium is imported only inside the fixture, so the
core test environment needs no extras.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 860)


@pytest.fixture(scope="session")
def browser() -> Iterator[Chrome]:
    """Yield a headless Chromium, started once per session; skip when there is none."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} is not installed: run scripts/install-browser")
    webdriver = pytest.importorskip("selenium.webdriver")
    service_module = pytest.importorskip("selenium.webdriver.chrome.service")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # needed as root
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        # Nothing but the server under test: no component updates, no sync, no metrics.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-first-run",
        "--metrics-recording-only",
    ):
        options.add_argument(argument)
    driver: Chrome = webdriver.Chrome(options=options, service=service_module.Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
