"""Tests of the visual Turing test: statistics, sessions, and a browser session end to end."""

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from simgan_tf.serving import export
from simgan_tf.data import schema
from simgan_tf.evaluation import turing_test

from conftest import SHAPE, pattern_images, write_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("successes,trials,expected", [
    (8, 10, Fraction(2 * (1 + 10 + 45), 2 ** 10)),      # 0.109375
    (2, 10, Fraction(2 * (1 + 10 + 45), 2 ** 10)),      # symmetric
    (10, 10, Fraction(2, 2 ** 10)),
    (15, 20, Fraction(2 * (1 + 20 + 190 + 1140 + 4845 + 15504), 2 ** 20)),  # 0.04139
    (4, 6, Fraction(2 * (1 + 6 + 15), 2 ** 6)),         # 0.6875
    (5, 10, 1), (3, 6, 1), (1, 1, 1), (0, 0, 1),
])
def test_binomial_p_value_by_hand(successes, trials, expected):
    assert turing_test.binomial_p_value(successes, trials) == pytest.approx(float(expected),
                                                                          rel=1e-12)


def test_binomial_p_value_matches_scipy():
    for trials in range(1, 41):
        for successes in range(trials + 1):
            assert turing_test.binomial_p_value(successes, trials) == pytest.approx(
                stats.binomtest(successes, trials, 0.5).pvalue, rel=1e-9, abs=1e-15)
    # The paper's real vs refined figure: 517 of 1000 correct is chance.
    assert turing_test.binomial_p_value(517, 1000) == pytest.approx(
        stats.binomtest(517, 1000).pvalue, rel=1e-9)
    assert turing_test.binomial_p_value(517, 1000) > 0.2
    with pytest.raises(ValueError, match="successes=11, trials=10"):
        turing_test.binomial_p_value(11, 10)


def test_summarize_by_hand():
    truths = ["real", "real", "real", "refined", "refined", "refined", "refined"]
    answers = ["real", "real", "synthetic", "real", "real", "synthetic", "real"]
    results = turing_test.summarize(truths, answers, "refined")
    assert results["confusion_matrix"] == {"real": {"real": 2, "synthetic": 1},
                                           "refined": {"real": 3, "synthetic": 1}}
    assert results["answered"] == 7 and results["correct"] == 3
    assert results["accuracy"] == pytest.approx(3 / 7)
    # 3 of 7: 2 * (1 + 7 + 21 + 35) / 128 = 1.0
    assert results["p_value"] == 1.0
    empty = turing_test.summarize([], [], "synthetic")
    assert empty["accuracy"] is None and empty["p_value"] == 1.0
    with pytest.raises(ValueError, match="answer='maybe'"):
        turing_test.summarize(["real"], ["maybe"], "refined")


def test_session_records_answers_in_order_and_saves_them(tmp_path):
    real = np.full((2, 4, 6, 1), 0.5, np.float32)
    other = np.full((2, 4, 6, 1), -0.5, np.float32)
    output = str(tmp_path / "answers.json")
    session = turing_test.Session(real, ["r0", "r1"], other, ["o0", "o1"],
                                  other_label="synthetic", output=output, seed=1,
                                  metadata={"subject": "test"})
    saved = json.load(open(output))
    assert saved["total"] == 4 and saved["results"]["answered"] == 0
    assert saved["subject"] == "test" and saved["condition"] == "real vs synthetic"
    assert sorted(t["key"] for t in saved["trials"]) == ["o0", "o1", "r0", "r1"]
    # The displayed image is the image, mapped to 8 bits.
    for trial in session.trials:
        shown = schema.decode_png_numpy(trial.png)
        assert np.all(shown == (191 if trial.truth == "real" else 64))
    assert not session.answer(1, "real")  # not the current trial: ignored
    with pytest.raises(ValueError, match="Received: 'yes'"):
        session.answer(0, "yes")
    for trial in list(session.trials):
        assert session.current is trial
        assert session.answer(trial.index, "real")
        assert not session.answer(trial.index, "synthetic")  # a second click: ignored
    assert session.done and session.current is None
    saved = json.load(open(output))
    assert [t["answer"] for t in saved["trials"]] == ["real"] * 4
    assert saved["results"]["confusion_matrix"] == {"real": {"real": 2, "synthetic": 0},
                                                    "synthetic": {"real": 2, "synthetic": 0}}
    assert saved["results"]["accuracy"] == 0.5 and saved["finished"] is not None
    with pytest.raises(ValueError, match="another label"):
        turing_test.Session(real, ["a", "b"], other, ["c", "d"], other_label="real",
                            output=output)


def test_load_images_refines_the_other_split(shifted_data_dir, refiner_export):
    refiner, path = refiner_export
    images, keys = turing_test.load_images(shifted_data_dir, "synthetic", 5, seed=3)
    assert images.shape == (5, *SHAPE) and len(set(keys)) == 5
    again, again_keys = turing_test.load_images(shifted_data_dir, "synthetic", 5, seed=3,
                                                refine=export.load_refiner(path))
    assert again_keys == keys
    np.testing.assert_allclose(again, refiner(images).numpy(), atol=1e-5)
    other, _ = turing_test.load_images(shifted_data_dir, "synthetic", 5, seed=4)
    assert not np.array_equal(other, images)  # the seed picks the images
    with pytest.raises(ValueError,
                       match=r"has 256 images; expected a count of at most 256\. "
                             r"Received: count=300"):
        turing_test.load_images(shifted_data_dir, "synthetic", 300, seed=0)


def _browser():
    """A headless Chromium driven by selenium, or a skip if Chromium is not installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        if os.environ.get("SIMGAN_TF_REQUIRE_BROWSER"):
            pytest.fail("SIMGAN_TF_REQUIRE_BROWSER is set but chromium/chromedriver are not "
                        "installed (apt-get install chromium chromium-driver).")
        pytest.skip("needs chromium and chromedriver (apt-get install chromium "
                    "chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=800,700"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_browser_session_end_to_end(tmp_path):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    data_dir = str(tmp_path / "data")
    real = pattern_images(3, seed=10) // 2  # dark: every image is told apart by its pixels
    synthetic = pattern_images(3, seed=11)
    write_split(data_dir, "real", real, "real")
    write_split(data_dir, "synthetic", synthetic, "synthetic")
    output = str(tmp_path / "answers.json")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "turing_test.py"), f"--data_dir={data_dir}",
         "--num_images=3", "--port=0", f"--output={output}", "--subject=selenium"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path), env=env)
    driver = None
    try:
        line = server.stdout.readline()
        assert "open http://" in line, (line, server.stderr.read()[-3000:]
                                        if server.poll() is not None else "")
        url = line.split("open ")[1].strip()
        assert "real vs synthetic, 6 images" in line
        driver = _browser()
        driver.get(url)
        clicked = []
        for step in range(6):
            assert driver.find_element(By.ID, "progress").text == f"Image {step + 1} of 6"
            src = driver.find_element(By.ID, "image").get_attribute("src")
            shown = schema.decode_png_numpy(urllib.request.urlopen(src).read())
            truth = ("real" if any(np.array_equal(shown, im) for im in real) else
                     "synthetic" if any(np.array_equal(shown, im) for im in synthetic) else None)
            assert truth is not None, "the page shows an image of neither split"
            # Right on the first four images, wrong on the last two.
            right = step < 4
            answer = truth if right else ("synthetic" if truth == "real" else "real")
            button = driver.find_element(By.ID, f"answer-{answer}")
            button.click()
            # The next page: the next image, or the results. Errors of the browser while
            # the page is being replaced (a stale node, a node of the old document) only
            # mean "not yet".
            following = f"Image {step + 2} of 6"
            WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(
                lambda d: (d.find_elements(By.ID, "accuracy") if step == 5 else
                           d.find_element(By.ID, "progress").text == following))
            clicked.append((truth, answer))
        WebDriverWait(driver, 20).until(
            expected_conditions.presence_of_element_located((By.ID, "accuracy")))
        assert driver.find_element(By.ID, "accuracy").text == "0.667"
        assert driver.find_element(By.ID, "p-value").text == "0.6875"
        server.wait(timeout=60)  # the command ends after the results page
        assert server.returncode == 0, server.stderr.read()[-3000:]
        assert "6 of 6 answered" in server.stdout.read()
    finally:
        if driver is not None:
            driver.quit()
        if server.poll() is None:
            server.kill()
            server.wait()
    saved = json.load(open(output))
    assert saved["condition"] == "real vs synthetic" and saved["subject"] == "selenium"
    assert saved["sources"]["real"] == {"data_dir": data_dir, "split": "real"}
    assert [(t["truth"], t["answer"]) for t in saved["trials"]] == clicked
    assert sorted(t["truth"] for t in saved["trials"]) == ["real"] * 3 + ["synthetic"] * 3
    assert all(t["seconds"] >= 0 for t in saved["trials"])
    results = saved["results"]
    assert results["answered"] == 6 and results["correct"] == 4
    assert results["accuracy"] == pytest.approx(4 / 6)
    assert results["p_value"] == pytest.approx(0.6875)
    matrix = results["confusion_matrix"]
    expected = {"real": {"real": 0, "synthetic": 0}, "synthetic": {"real": 0, "synthetic": 0}}
    for truth, answer in clicked:
        expected[truth][answer] += 1
    assert matrix == expected


def test_server_pages_without_a_browser(tmp_path):
    """The HTTP layer in-process: pages, images, bad requests, stale answers, shutdown."""
    import threading
    import urllib.error
    import urllib.parse

    real = np.full((1, 4, 6, 1), 0.5, np.float32)
    other = np.full((1, 4, 6, 1), -0.5, np.float32)
    session = turing_test.Session(real, ["r0"], other, ["o0"], other_label="refined",
                                  output=str(tmp_path / "a.json"), seed=0)
    httpd = turing_test.make_server(session, port=0)
    assert httpd.zoom == 73  # about 440 pixels wide
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = "http://%s:%d" % httpd.server_address[:2]

    def post(fields):
        data = urllib.parse.urlencode(fields).encode()
        return urllib.request.urlopen(base + "/answer", data=data)  # follows the 303

    try:
        page = urllib.request.urlopen(base + "/").read().decode()
        first = session.trials[0]
        assert "Image 1 of 2" in page and f'src="/image/{first.index}"' in page
        assert 'width="438"' in page
        assert "refined" not in page and first.key not in page  # nothing gives it away
        assert urllib.request.urlopen(base + "/image/1").read() == session.trials[1].png
        for path in ("/image/7", "/image/x", "/nothing"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(base + path)
        for fields in ({"trial": "0"}, {"trial": "0", "answer": "maybe"}, {"answer": "real"}):
            with pytest.raises(urllib.error.HTTPError, match="400"):
                post(fields)
        assert "Image 2 of 2" in post({"trial": "0", "answer": "real"}).read().decode()
        post({"trial": "0", "answer": "synthetic"})  # stale: ignored
        assert session.trials[0].answer == "real"
        saved = json.load(urllib.request.urlopen(base + "/results.json"))
        assert saved["results"]["answered"] == 1
        results = post({"trial": "1", "answer": "real"}).read().decode()
        assert "Done" in results and 'id="p-value">1<' in results
        thread.join(timeout=10)  # the results page stops the server
        assert not thread.is_alive()
    finally:
        if thread.is_alive():
            httpd.shutdown()
        httpd.server_close()
