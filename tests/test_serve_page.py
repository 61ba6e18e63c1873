"""The page at `GET /`, driven in headless Chromium: pick a digit, see it, read the top-5 bars."""

import numpy as np
from browser import headless_chrome
from serving import running

import infer
from serve.app import create_app
from zoo.data.preprocess import preprocess


def test_page_classifies_an_uploaded_digit(served_lenet, tmp_path):
    predictor = infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)
    digit, _ = served_lenet.digits[7]
    (tmp_path / "digit.png").write_bytes(digit)
    want = predictor.predict(preprocess(digit, predictor.card)[None])[0]
    with running(create_app(predictor)) as url, headless_chrome(tmp_path, width=800, height=900) as driver:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(url + "/")
        WebDriverWait(driver, 20).until(lambda d: "lenet5" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file").send_keys(str(tmp_path / "digit.png"))
        WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .row")) == 5
                                        or d.find_element(By.ID, "error").text)
        assert driver.find_element(By.ID, "error").text == ""
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#results .label")]
        widths = driver.execute_script("return Array.from(document.querySelectorAll('#results .bar div'))"
                                       ".map(e => e.getBoundingClientRect().width)")
        shown = driver.execute_script("const i = document.getElementById('preview');"
                                      "return [i.complete, i.naturalWidth]")
    assert labels == [predictor.card.class_names[i] for i in np.argsort(-want)[:5]]
    assert widths[0] > 0 and widths == sorted(widths, reverse=True)  # bars drawn, longest first
    assert shown == [True, 28]  # the picked image is on the page
