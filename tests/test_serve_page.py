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
        WebDriverWait(driver, 20).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .row")) == 5 or d.find_element(By.ID, "error").text
        )
        assert driver.find_element(By.ID, "error").text == ""
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#results .label")]
        widths = driver.execute_script(
            "return Array.from(document.querySelectorAll('#results .bar div'))"
            ".map(e => e.getBoundingClientRect().width)"
        )
        shown = driver.execute_script(
            "const i = document.getElementById('preview');return [i.complete, i.naturalWidth]"
        )
    assert labels == [predictor.card.class_names[i] for i in np.argsort(-want)[:5]]
    assert widths[0] > 0 and widths == sorted(widths, reverse=True)  # bars drawn, longest first
    assert shown == [True, 28]  # the picked image is on the page


def test_the_drop_zone_sits_below_the_subtitle(served_lenet, tmp_path):
    predictor = infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)
    with running(create_app(predictor)) as url, headless_chrome(tmp_path, width=900, height=700) as driver:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(url + "/")
        WebDriverWait(driver, 20).until(lambda d: "lenet5" in d.find_element(By.ID, "model").text)
        model, drop = driver.execute_script(
            "return ['model', 'drop'].map(i => {"
            "const r = document.getElementById(i).getBoundingClientRect();"
            "return [r.top, r.bottom]; })"
        )
    assert model[1] <= drop[0]  # the drop zone's border box starts below the subtitle line


def test_with_an_api_key_the_page_asks_for_it_and_keeps_it_for_the_session(served_lenet, tmp_path):
    predictor = infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)
    digit, _ = served_lenet.digits[3]
    (tmp_path / "digit.png").write_bytes(digit)
    want = predictor.card.class_names[int(predictor.predict(preprocess(digit, predictor.card)[None])[0].argmax())]
    with (
        running(create_app(predictor, api_key="s3cret")) as url,
        headless_chrome(tmp_path, width=900, height=700) as driver,
    ):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(url + "/")
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "key").is_displayed())
        driver.find_element(By.ID, "key").send_keys("s3cret\n")
        WebDriverWait(driver, 20).until(lambda d: "lenet5" in d.find_element(By.ID, "model").text)
        assert not driver.find_element(By.ID, "key").is_displayed()
        driver.refresh()  # the key lives in the tab's session storage: asked once per session
        WebDriverWait(driver, 20).until(lambda d: "lenet5" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file").send_keys(str(tmp_path / "digit.png"))
        WebDriverWait(driver, 20).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .row")) == 5 or d.find_element(By.ID, "error").text
        )
        assert driver.find_element(By.ID, "error").text == ""
        assert driver.find_elements(By.CSS_SELECTOR, "#results .label")[0].text == want
        assert driver.execute_script("return sessionStorage.getItem('zoo-api-key')") == "s3cret"


def test_the_api_docs_render_without_internet(served_lenet, tmp_path):
    predictor = infer.load(served_lenet.onnx, backend="onnxruntime", threads=1)
    with running(create_app(predictor)) as url, headless_chrome(tmp_path, width=900, height=700) as driver:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(url + "/docs")  # Chromium here has no network: every script and style is the server's
        WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 5)
        paths = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert "/predict" in paths and "/v2/models/{model}/infer" in paths
