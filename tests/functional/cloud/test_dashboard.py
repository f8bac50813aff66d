"""Horizon in a real browser against the cloud (conftest.py): what a member
user does on our driver, driven through Debian's Chromium and chromium-driver
by Selenium, headless. Nothing downloads a browser: both binaries are given.

Log in; Launch Instance wizard (debian-12, a flavor, network ``private``, a
key pair, security group ``default``, a customization script giving the
``debian`` user a console password); the instance Active with its IP; the
Log tab shows its console (the getty's prompt); the Console tab opens the
serial console (term.js on a websocket to the cloud's nova-serialproxy), logs
in and runs ``hostname``; create a snapshot, shut off, start, soft reboot;
delete. A screenshot per step goes to
``.cache/test-results/dashboard-*.png``.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile

import pytest

from cloud import demo, layout, resources

pytestmark = pytest.mark.timeout(900)
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
RESULTS = os.path.join(layout.REPO, ".cache", "test-results")
NAME = "dash-1"
KEYPAIR = "dash-key"
SNAPSHOT = "dash-1-snapshot"
WAIT = 60


@pytest.fixture
def browser():
    """A headless Chromium; skipped only if it cannot start here."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"{binary} is not installed (bindep.txt, profile test)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager never fetches anything
    profile = tempfile.mkdtemp(prefix="nlx-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--no-first-run", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", f"--user-data-dir={profile}",
                # Only the cloud is reachable: anything else goes to a closed port.
                "--proxy-server=127.0.0.1:9",
                f"--proxy-bypass-list={layout.MGMT_NET}.0/24"):
        options.add_argument(arg)
    os.makedirs(RESULTS, exist_ok=True)
    service = Service(executable_path=CHROMEDRIVER,
                      log_output=os.path.join(RESULTS, "chromedriver.log"))
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as e:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"Chromium cannot start here: {e.msg}")
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Steps:
    """Screenshots numbered in the order of the steps."""

    def __init__(self, driver):
        self.driver = driver
        self.n = 0

    def shot(self, name: str) -> None:
        self.n += 1
        self.driver.save_screenshot(os.path.join(RESULTS, f"dashboard-{self.n:02d}-{name}.png"))


def _until(driver, what, timeout: float = WAIT, message: str = "",
           poll_frequency: float = 0.5):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.wait import WebDriverWait
    # Horizon's tables refresh their rows in place: an element found a moment ago
    # may be gone when read, which is a reason to look again, not a failure.
    return WebDriverWait(driver, timeout, poll_frequency=poll_frequency,
                         ignored_exceptions=(StaleElementReferenceException,)
                         ).until(what, message)


def _allocate(driver, step, label: str) -> None:
    """Move the row named *label* of a transfer table (wizard step *step*) to
    its allocated table, unless the wizard already did (a single choice)."""
    from selenium.webdriver.common.by import By

    row = (f".//*[normalize-space(text())='{label}']/ancestor::tr[1]"
           "//*[contains(@class, 'fa-arrow-{}')]")
    found = _until(driver, lambda d: step.find_elements(By.XPATH, row.format("up"))
                   or step.find_elements(By.XPATH, row.format("down")),
                   message=f"no {label!r} in the wizard's table")
    if "fa-arrow-up" in found[0].get_attribute("class"):
        found[0].click()
    _until(driver, lambda d: step.find_elements(By.XPATH, row.format("down")),
           message=f"{label!r} not allocated")


def _terminal_text(driver) -> str:
    from selenium.webdriver.common.by import By
    rows = driver.find_elements(By.CSS_SELECTOR, "#terminalNode .terminal > div")
    return "\n".join(r.text.rstrip() for r in rows)


def test_dashboard_launch_console_delete(cloud, browser):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC

    conn = resources.member()
    old = conn.compute.find_server(NAME)
    if old:
        conn.compute.delete_server(old)
        conn.compute.wait_for_delete(old, wait=120)
    if conn.compute.find_keypair(KEYPAIR) is None:
        os.makedirs(demo.KEY_DIR, exist_ok=True)
        if not os.path.exists(demo.KEY):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", demo.KEY],
                           check=True)
        with open(demo.KEY + ".pub") as f:
            conn.compute.create_keypair(name=KEYPAIR, public_key=f.read())
    password = secrets.token_urlsafe(12)
    user_data = f"#cloud-config\npassword: {password}\nchpasswd: {{expire: false}}\n"
    d, steps = browser, Steps(browser)
    base = cloud["dashboard"].rstrip("/")
    try:
        # 1. log in as the member user
        d.get(f"{base}/auth/login/")
        _until(d, EC.visibility_of_element_located((By.ID, "id_username")))
        d.find_element(By.ID, "id_username").send_keys(layout.MEMBER_USER)
        d.find_element(By.ID, "id_password").send_keys(layout.MEMBER_PASSWORD)
        steps.shot("login")
        d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _until(d, lambda d: "/auth/login" not in d.current_url, message="login failed")
        steps.shot("logged-in")

        # 2. the Launch Instance wizard
        d.get(f"{base}/project/instances/")
        _until(d, EC.element_to_be_clickable((By.LINK_TEXT, "Launch Instance"))).click()
        wizard = _until(d, EC.visibility_of_element_located((By.CSS_SELECTOR, "wizard")))
        nav = wizard.find_element(By.CSS_SELECTOR, "div.wizard-nav")
        _until(d, EC.visibility_of_element_located((By.ID, "name"))).send_keys(NAME)

        def step(title: str, form: str):
            nav.find_element(By.LINK_TEXT, title).click()
            return _until(d, EC.visibility_of_element_located(
                (By.CSS_SELECTOR, f"ng-include[ng-form={form}]")))

        _allocate(d, step("Source", "launchInstanceSourceForm"), "debian-12")
        _allocate(d, step("Flavor", "launchInstanceFlavorForm"), "c1.small")
        _allocate(d, step("Networks", "launchInstanceNetworkForm"), "private")
        _allocate(d, step("Security Groups", "launchInstanceAccessAndSecurityForm"),
                  "default")
        _allocate(d, step("Key Pair", "launchInstanceKeypairForm"), KEYPAIR)
        step("Configuration", "launchInstanceConfigurationForm").find_element(
            By.ID, "user-data").send_keys(user_data)
        steps.shot("wizard")
        _until(d, EC.element_to_be_clickable(
            (By.CSS_SELECTOR, "button.btn-primary.finish"))).click()
        _until(d, EC.invisibility_of_element_located((By.CSS_SELECTOR, "wizard")))

        # 3. Active with its IP, in the instances table (Horizon refreshes the row)
        row = f"table#instances tr[data-display='{NAME}']"

        def active(d):
            rows = d.find_elements(By.CSS_SELECTOR, row)
            text = rows[0].text if rows else ""
            if "Error" in text:
                raise AssertionError(f"instance failed: {text}")
            return "Active" in text and "10.0.0." in text and text
        text = _until(d, active, timeout=300, message="not Active with an IP")
        steps.shot("active")
        server = conn.compute.find_server(NAME)
        assert server.status == "ACTIVE", text
        assert demo._address(conn.compute.get_server(server.id)) in text

        # 4. the Log tab: the container's console (the getty's prompt)
        detail = f"{base}/project/instances/{server.id}/"

        def console_log(d):
            d.get(detail + "?tab=instance_details__log")
            logs = d.find_elements(By.CSS_SELECTOR, "pre.logs")
            return logs and "login:" in logs[0].text and logs[0].text
        log = _until(d, console_log, timeout=120, message="no login prompt in the Log tab")
        assert "Debian GNU/Linux 12" in log, log[-500:]  # the getty's banner
        steps.shot("console-log")

        # 5. the Console tab: the serial console through nova-serialproxy
        d.get(detail + "?tab=instance_details__console")
        frame = _until(d, EC.presence_of_element_located((By.ID, "console_embed")))
        steps.shot("console-tab")
        d.switch_to.frame(frame)
        _until(d, lambda d: "login:" in _terminal_text(d), timeout=WAIT,
               message="no login prompt on the serial console")
        d.find_element(By.CSS_SELECTOR, "#terminalNode .terminal").click()

        def type_(text: str) -> None:
            ActionChains(d).send_keys(text).send_keys(Keys.ENTER).perform()

        type_("debian")
        _until(d, lambda d: "Password:" in _terminal_text(d),
               message=f"no password prompt: {_terminal_text(d)[-300:]}")
        type_(password)
        _until(d, lambda d: f"debian@{NAME}:~$" in _terminal_text(d),
               message=f"no shell prompt: {_terminal_text(d)[-300:]}")
        type_("hostname")

        def answered(d):
            lines = _terminal_text(d).splitlines()
            for i, line in enumerate(lines[:-1]):
                if line.endswith("$ hostname") and lines[i + 1].strip() == NAME:
                    return True
            return False
        _until(d, answered, message=f"no hostname output: {_terminal_text(d)[-300:]}")
        steps.shot("serial-console")
        type_("exit")
        d.switch_to.default_content()

        # 6. the row's actions: create snapshot, shut off, start, soft reboot
        def row_action(label: str) -> None:
            d.get(f"{base}/project/instances/")
            actions = _until(d, EC.presence_of_element_located(
                (By.CSS_SELECTOR, f"{row} td.actions_column")))
            item = f".//*[normalize-space()='{label}']"
            if not actions.find_elements(By.XPATH, item + "[not(ancestor::ul)]"):
                actions.find_element(By.CSS_SELECTOR, ".dropdown-toggle").click()
            actions.find_element(By.XPATH, item).click()
            if label == "Create Snapshot":  # a form: its name, then submit
                _until(d, EC.visibility_of_element_located((By.ID, "id_name"))).send_keys(
                    SNAPSHOT)
                steps.shot("create-snapshot")
            # the confirmation (or the form's submit button), where there is one
            try:
                _until(d, EC.element_to_be_clickable(
                    (By.CSS_SELECTOR, ".modal-dialog .btn-danger, .modal-dialog .btn-primary")),
                    timeout=5).click()
            except TimeoutException:
                pass

        def done(action: str, word: str) -> None:
            """nova finished *action* (its instance action's events all
            succeeded) and the table shows the server as *word*."""
            def finished(d):
                found = [a for a in conn.compute.server_actions(server.id)
                         if a.action == action]
                if not found:
                    return False
                events = conn.compute.get_server_action(found[0].request_id,
                                                        server.id).events or []
                for e in events:
                    if getattr(e, "result", None) == "Error":
                        raise AssertionError(f"{action} failed: {e}")
                return events and all(getattr(e, "finish_time", None) for e in events)
            _until(d, finished, timeout=180, poll_frequency=2,
                   message=f"nova did not finish {action}")

            def shown(d):
                d.get(f"{base}/project/instances/")
                rows = d.find_elements(By.CSS_SELECTOR, row)
                return rows and word in rows[0].text.split()
            _until(d, shown, poll_frequency=2, message=f"{NAME} not shown {word}")
            steps.shot(action)

        row_action("Create Snapshot")
        done("createImage", "Active")
        _until(d, lambda d: getattr(conn.image.find_image(SNAPSHOT), "status", "") == "active",
               timeout=180, poll_frequency=2, message="the snapshot never became active")
        row_action("Shut Off Instance")
        done("stop", "Shutoff")
        row_action("Start Instance")
        done("start", "Active")
        row_action("Soft Reboot Instance")
        done("reboot", "Active")
        assert conn.compute.get_server(server.id).status == "ACTIVE"

        # 7. delete from the instances table
        row_action("Delete Instance")
        conn.compute.wait_for_delete(server, wait=120)
        d.get(f"{base}/project/instances/")
        _until(d, lambda d: not d.find_elements(By.CSS_SELECTOR, row),
               message="the deleted instance is still listed")
        steps.shot("deleted")
    except Exception:
        d.switch_to.default_content()
        steps.shot("failure")
        with open(os.path.join(RESULTS, "dashboard-failure.html"), "w") as f:
            f.write(d.page_source)
        raise
    finally:
        left = conn.compute.find_server(NAME)
        if left:
            conn.compute.delete_server(left)
            conn.compute.wait_for_delete(left, wait=120)
        snap = conn.image.find_image(SNAPSHOT)
        if snap:
            conn.image.delete_image(snap)
        kp = conn.compute.find_keypair(KEYPAIR)
        if kp:
            conn.compute.delete_keypair(kp)
