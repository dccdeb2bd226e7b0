"""The admin pages in a real browser: headless Chromium from the distribution's packages.

Marked ``browser``: skipped where Chromium and its driver are not installed (``apt-get install
chromium chromium-driver``), except when ``CLOUDTASK_REQUIRE_BROWSER=1`` (as in CI), where a
missing browser fails. Screenshots go to the test's temporary directory, never the repository.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from cloudtask import conf
from cloudtask.models import LocalTask, TaskResult
from tests import tasks

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
REQUIRED = os.environ.get("CLOUDTASK_REQUIRE_BROWSER") == "1"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not REQUIRED and not (CHROMIUM and CHROMEDRIVER),
        reason="needs chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    assert CHROMIUM, "CLOUDTASK_REQUIRE_BROWSER=1, but chromium is not installed"
    assert CHROMEDRIVER, "CLOUDTASK_REQUIRE_BROWSER=1, but chromium-driver is not installed"
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium download a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1800",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def admin_url(static_url: None, live_server: Any, browser: Any) -> Iterator[str]:
    """The live admin, logged in as a superuser, with tasks on the local queue."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    local = {"BACKEND": conf.LOCAL_BACKEND, "URL": "http://127.0.0.1:8000/_tasks/"}
    with override_settings(CLOUDTASK=local):
        User.objects.create_superuser("admin", "admin@example.com", "a-long-password-1")
        browser.get(live_server.url + "/admin/login/")
        browser.find_element(By.NAME, "username").send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys("a-long-password-1")
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        # Logged in once the admin's index has loaded: before, a page could still redirect
        # to the login form.
        WebDriverWait(browser, 30).until(lambda driver: "/login/" not in driver.current_url)
        assert browser.find_element(By.ID, "user-tools")
        yield live_server.url + "/admin/cloudtask/"


def test_task_pages(browser: Any, admin_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    tasks.noop().delay(name="older")
    tasks.send_email(to="a@example.com").delay(name="welcome")
    failed = tasks.noop().delay(name="broken")
    LocalTask.objects.filter(name=failed.name).update(
        status="failed", dispatch_count=3, retry_reason="500 Internal Server Error"
    )

    browser.get(admin_url + "localtask/")
    browser.save_screenshot(str(tmp_path / "tasks.png"))
    names = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "th.field-name")]
    assert names == ["broken", "welcome", "older"]  # newest first
    assert "failed after 3 attempt(s): 500 Internal Server Error" in browser.page_source

    browser.get(admin_url + f"localtask/{LocalTask.objects.get(name='welcome').pk}/change/")
    browser.save_screenshot(str(tmp_path / "task.png"))
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "send_email(to='a@example.com')" in text
    assert "X-CloudTask-Signature: (redacted)" in text
    assert "v1=" not in browser.page_source
    assert not browser.find_elements(By.NAME, "_save")  # a view, not a form
    details = browser.find_element(By.TAG_NAME, "details")
    assert details.get_attribute("open") is None  # the raw JSON starts folded
    details.find_element(By.TAG_NAME, "summary").click()
    assert details.get_attribute("open") is not None
    assert '"task": "tests.tasks.send_email"' in details.text


def test_result_and_queue_pages(browser: Any, admin_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\n    boom()\nValueError'
    row = TaskResult.objects.create(
        call_id="c1", task="tests.tasks.add", args=[2], kwargs={"b": 3}, traceback=traceback
    )
    browser.get(admin_url + f"taskresult/{row.pk}/change/")
    browser.save_screenshot(str(tmp_path / "result.png"))
    [pre] = [p for p in browser.find_elements(By.TAG_NAME, "pre") if "Traceback" in p.text]
    assert pre.text == traceback  # every line's indentation as it was
    assert "add(2, b=3)" in browser.find_element(By.TAG_NAME, "body").text
    assert not browser.find_elements(By.NAME, "_save")

    browser.get(admin_url + "localqueue/add/")
    browser.find_element(By.NAME, "name").send_keys("my queue!")
    browser.find_element(By.NAME, "_save").click()
    browser.save_screenshot(str(tmp_path / "queue.png"))
    errors = browser.find_element(By.CSS_SELECTOR, ".errorlist").text
    assert errors.startswith("The queue name must be a Cloud Tasks queue id")
