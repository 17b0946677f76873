import base64
import xml.etree.ElementTree as ET

from biocap_assets.plots import markdown_image, svg_bars, svg_lines

SVG = "{http://www.w3.org/2000/svg}"


def test_line_chart_is_valid_svg_with_one_line_per_series_and_skips_nan():
    svg = svg_lines(
        {"train loss": [(1, 4.0), (2, float("nan")), (3, 2.0)], "val loss": [(3, 3.0)]},
        "step",
        "loss",
    )
    root = ET.fromstring(svg)
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    assert len(lines[0].get("points").split()) == 2  # the NaN point is dropped
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "train loss" in texts and "val loss" in texts and "step" in texts


def test_empty_chart_says_so():
    assert "no data yet" in svg_lines({"train loss": []}, "step", "loss")


def test_bars_scale_values_and_mark_chance():
    root = ET.fromstring(svg_bars([("a", 50.0, 10.0), ("b", 100.0, 10.0)]))
    bars = [r for r in root.findall(f"{SVG}rect") if r.get("fill") != "white"]
    assert float(bars[1].get("width")) == 2 * float(bars[0].get("width"))
    assert len(root.findall(f"{SVG}line")) == 2  # one chance tick per bar


def test_markdown_image_embeds_the_svg():
    svg = svg_bars([("a", 1.0, 0.5)])
    markdown = markdown_image(svg, "alt text")
    assert markdown.startswith("![alt text](data:image/svg+xml;base64,")
    assert base64.b64decode(markdown.split(",", 1)[1].rstrip(")")).decode() == svg
