"""The browser helper itself: it must see a broken image and a blank page, or page tests prove nothing."""

import base64
import io

from browser import headless_chrome, render_check
from PIL import Image


def test_render_check_finds_broken_images_and_blank_pages(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (30, 90, 200)).save(buf, format="PNG")
    good = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    bad = "data:image/png;base64," + base64.b64encode(b"not a png").decode()
    (tmp_path / "page.html").write_text(f'<title>t</title><h1>hello</h1><img src="{good}"><img src="{bad}">')
    (tmp_path / "blank.html").write_text("<title>b</title>")
    with headless_chrome(tmp_path, width=400, height=300) as driver:
        page = render_check(driver, (tmp_path / "page.html").as_uri())
        blank = render_check(driver, (tmp_path / "blank.html").as_uri())
    assert page["images"] == 2 and len(page["broken"]) == 1 and page["broken"][0].startswith(bad[:40])
    assert not page["blank"] and blank["blank"]
