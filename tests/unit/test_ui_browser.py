"""`dmospeech ui` in a real browser: headless Chromium (Debian's chromium + chromium-driver, which
`make test` installs) driven by selenium, against the page serving a tiny random model.

The screenshots land in tmp/test-artifacts/ui/ (printed; kept after the run)."""
import io
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import PROJECT_ROOT, voiced, write
from tests.unit.test_synthesize import teacher_dir  # noqa: F401  (the tiny random teacher fixture)

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = PROJECT_ROOT / "tmp" / "test-artifacts" / "ui"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1400")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
                                reason="needs Debian's chromium and chromium-driver (`make test` installs them)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def page(teacher_dir, tmp_path_factory):  # noqa: F811
    from dmospeech.ui.app import launch

    port = free_port()
    app = launch(str(PROJECT_ROOT / "params.yaml"), str(teacher_dir), port=port,
                 out_dir=tmp_path_factory.mktemp("ui-out"), block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def fill_and_submit(browser, url: str, prompt: Path, text: str, seconds: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    wait = WebDriverWait(browser, 30)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#prompt input[type=file]")))
    browser.find_element(By.CSS_SELECTOR, "#prompt input[type=file]").send_keys(str(prompt))
    browser.find_element(By.CSS_SELECTOR, "#prompt_text textarea").send_keys("a short prompt")
    browser.find_element(By.CSS_SELECTOR, "#text textarea").send_keys(text)
    field = browser.find_element(By.CSS_SELECTOR, "#seconds input")
    field.clear()
    field.send_keys(seconds)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#prompt audio, #prompt .file-name, #prompt .error")
               or "Error" in d.find_element(By.CSS_SELECTOR, "#prompt").text)
    browser.find_element(By.CSS_SELECTOR, "#synthesise").click()
    return WebDriverWait(browser, 60).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#status").text.strip() or None)


def test_synthesise_in_the_browser_and_download_a_marked_48khz_file(page, browser, tmp_path, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from dmospeech.synthesis.watermark import THRESHOLD, score

    prompt = write(tmp_path / "voice.wav", voiced(1.0, 16000))
    status = fill_and_submit(browser, page, prompt, "hello there", "0.5")
    assert status.startswith("Done"), status
    assert "0.50 s of speech" in status and "RTF" in status and "SIM to the prompt" in status
    src = WebDriverWait(browser, 30).until(   # the player's download button
        lambda d: d.find_element(By.CSS_SELECTOR, "#output a[download]").get_attribute("href") or None)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "synthesised.png"
    browser.save_screenshot(str(shot))
    with capsys.disabled():
        print(f"\nscreenshot of the page after synthesis: {shot}")
    with urllib.request.urlopen(src, timeout=30) as response:
        audio, rate = sf.read(io.BytesIO(response.read()), dtype="float32")
    assert rate == 48000 and audio.ndim == 1 and len(audio) == 24000   # 0.5 s = 20 latent frames x 1200
    assert np.isfinite(audio).all() and score(audio, rate) >= THRESHOLD  # the page's file is watermarked


def test_an_unreadable_prompt_shows_a_message_not_a_trace(page, browser, tmp_path, capsys):
    from selenium.webdriver.common.by import By

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF1234WAVEnot really audio")
    status = fill_and_submit(browser, page, broken, "hello there", "0.5")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "unreadable_prompt.png"))
    with capsys.disabled():
        print(f"\nscreenshot of the error message: {ARTIFACTS / 'unreadable_prompt.png'}")
    assert status.startswith("Error") and "cannot read the prompt broken.wav" in status, status
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
