"""report.html (validator.report.html.render_report): self-contained, every section, every run shape
(seg with gate and history, det only, one model, many variants), mailable at 5000 images, deterministic."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests import report_data as rd
from validator.report import html as report_html
from validator.report.html import GALLERY_MAX, render_report

ROOT = Path(__file__).resolve().parents[1]
ALL_SECTIONS = ("table", "gate", "per-class", "pr", "sizes", "scores", "gallery", "history", "timing", "provenance")
URL_ATTRS = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background", "cite", "longdesc",
             "manifest", "ping", "xlink:href", "codebase", "archive", "icon", "lowsrc", "dynsrc"}


class _Page(HTMLParser):
    """Tags, their attributes, ids, inline CSS and scripts of a page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.css: list[str] = []
        self.scripts: list[str] = []
        self._in: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {k.lower(): (v or "") for k, v in attrs}
        self.tags.append((tag, a))
        if a.get("style"):
            self.css.append(a["style"])
        self._in = tag if tag in ("style", "script") else None

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        self._in = None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "style":
            self.css.append(data)
        elif self._in == "script":
            self.scripts.append(data)

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if a.get("id")}

    def count(self, tag: str, **attrs) -> int:
        return sum(1 for t, a in self.tags if t == tag and all(a.get(k, "").startswith(v) for k, v in attrs.items()))


def assert_self_contained(text: str) -> None:
    page = _Page(text)
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            if name in URL_ATTRS or name.startswith("on"):
                v = value.strip().lower()
                if name in URL_ATTRS:
                    assert v.startswith(("data:", "#")) or v == "", (tag, name, value[:80])
                assert "http:" not in v and "https:" not in v and not v.startswith("//"), (tag, name, value[:80])
        if tag == "link":
            assert attrs.get("rel", "").lower() not in ("stylesheet", "preload", "prefetch", "import", "icon",
                                                       "dns-prefetch", "preconnect", "modulepreload"), attrs
        assert not (tag == "script" and attrs.get("src")), attrs
        assert tag not in ("iframe", "embed", "object", "frame", "base", "audio", "video", "source"), tag
        if tag == "meta" and attrs.get("http-equiv", "").lower() == "refresh":
            raise AssertionError("meta refresh")
    for css in page.css:
        for url in re.findall(r"url\(\s*['\"]?([^'\")]*)", css, flags=re.I):
            assert url.strip().lower().startswith("data:"), url[:80]
        assert "@import" not in css.lower()
        assert "http://" not in css and "https://" not in css and "//" not in re.sub(r"/\*.*?\*/", "", css)
    for js in page.scripts:
        for word in ("fetch(", "XMLHttpRequest", "import(", "WebSocket", "EventSource", "sendBeacon", "http:",
                     "https:", ".src=", "location"):
            assert word not in js, word
    # the browser enforces it too: nothing but data: images, inline style and inline script
    csp = [a.get("content", "") for t, a in page.tags
           if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0] and "img-src data:" in csp[0], csp


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def seg_data(tmp_path_factory, shapes_small) -> dict:
    out = rd.real_run(tmp_path_factory, "seg", shapes_small)
    summary = json.loads((out / "summary.json").read_text())
    gate, gate_md = rd.sample_gate(summary, passed=False)
    return rd.load_run(out, shapes_small, gate=gate, gate_markdown=gate_md, history=rd.sample_history())


@pytest.fixture(scope="module")
def seg_html(seg_data) -> str:
    return render_report(seg_data)


@pytest.fixture(scope="module")
def det_data(tmp_path_factory, shapes_small) -> dict:
    return rd.load_run(rd.real_run(tmp_path_factory, "det", shapes_small), shapes_small)


@pytest.fixture(scope="module")
def big_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("report-big")


# ------------------------------------------------------------------------------------------ seg run, all sections
@pytest.mark.slow
def test_seg_run_with_gate_and_history_has_every_section(seg_html, seg_data):
    page = _Page(seg_html)
    ids = page.ids()
    for sid in ("verdict", *ALL_SECTIONS):
        assert sid in ids, sid
    assert_self_contained(seg_html)
    # verdict first, then the table, then the charts
    order = [seg_html.index(f'id="{sid}"') for sid in ("verdict", "table", "gate", "per-class", "pr", "gallery")]
    assert order == sorted(order)
    assert '<div class="badge fail">FAIL</div>' in seg_html
    # the headline table in the reference layout, every row, deltas coloured
    table_md = seg_data["table_md"]
    for label in ("ONNX float32 (shapes-seg)", "TFLite INT8 (shapes-seg.int8)", "Δ shapes-seg.int8 − shapes-seg"):
        assert label in table_md and label in seg_html
    for cell in re.findall(r"\| (-?\d+\.\d\d pts) ", table_md):
        assert re.search(rf'<td class="num d[np0][12]?" data-v="[^"]+">{re.escape(cell)}</td>', seg_html), cell
    for head in ("Det mAP@0.5", "Det mAP@0.5-0.95", "Mask mAP@0.5", "Mask mAP@0.5-0.95"):
        assert f"<th>{head}</th>" in seg_html
    # the failing checks are named at the top and in the gate table with their CIs
    failed = [r for r in seg_data["gate"]["results"] if not r["passed"]]
    assert failed
    top = seg_html[seg_html.index('id="verdict"'):seg_html.index('id="table"')]
    for r in failed:
        assert f"{r['check']} · {r['metric']} ({r['iou_type']}) · {r['model']}" in top
    assert "CI (bootstrap)" in seg_html and seg_html.count('<tr class="bad">') == len(failed)
    for r in seg_data["gate"]["results"]:  # value vs limit escaped once: "7.17 pts &lt;= 8.50 pts", not "&amp;lt;="
        if r.get("op") and r.get("value") is not None:
            assert f" {r['op'].replace('<', '&lt;').replace('>', '&gt;')} " in seg_html
    assert "&amp;lt;" not in seg_html and "&amp;gt;" not in seg_html
    assert "no class with &gt;= 500 instances" in seg_html  # a skipped check says why
    # plots: per-class, PR overall + worst classes, sizes, scores, timing, history; gallery with masks
    section = {sid: seg_html[seg_html.index(f'id="{sid}"'):] for sid in ALL_SECTIONS}
    assert section["per-class"].split("</section>")[0].count('src="data:image/png;base64,') == 1
    assert section["pr"].split("</section>")[0].count('src="data:image/png;base64,') == 2
    for sid in ("sizes", "scores", "timing", "history"):
        assert 'src="data:image/png;base64,' in section[sid].split("</section>")[0], sid
    gallery = section["gallery"].split("</section>")[0]
    assert gallery.count('src="data:image/jpeg;base64,') == 2 * len(seg_data["gallery"])
    assert page.count("table", **{"class": "data sortable"}) == 2  # boxes and masks per-class tables
    assert "Masks: 6 classes" in seg_html and "Boxes: 6 classes" in seg_html
    # provenance: hashes, versions, settings, metric definitions
    s = seg_data["summary"]
    for m in s["models"]:
        assert m["sha256"] in seg_html
    assert s["dataset"]["sha256"] in seg_html and s["dataset"]["annotations_sha256"] in seg_html
    for k, v in s["versions"].items():
        assert f"{k} <code>{v}</code>" in seg_html
    for k in s["settings"]["metric_definitions"]:
        assert f"<dt>{k}</dt>" in seg_html
    # the trend table and the gate markdown as printed
    assert "2025-01-03 02:00" in seg_html and "gate output as printed" in seg_html


@pytest.mark.slow
def test_curves_are_cocoeval_and_plotted_from_the_data(seg_data):
    """The helper's curves are COCO's: mean of the defined precision equals the summary's mAP50."""
    import numpy as np

    for m in seg_data["summary"]["models"]:
        for t, metrics in m["metrics"].items():
            c = seg_data["curves"][m["name"]][t]
            assert len(c["recall"]) == 101 and len(c["precision"]["0.50"]) == 101
            per_class = np.array([v["0.50"] for v in c["per_class"].values()])
            valid = per_class[per_class > -1]
            assert valid.mean() == pytest.approx(metrics["mAP50"], abs=1e-5)


# ------------------------------------------------------------------------------------------ other run shapes
@pytest.mark.slow
def test_det_only_run_without_gate_or_history(det_data):
    text = render_report(det_data)
    assert_self_contained(text)
    ids = _Page(text).ids()
    assert {"verdict", "table", "per-class", "pr", "sizes", "scores", "gallery", "timing", "provenance"} <= ids
    assert "gate" not in ids and "history" not in ids
    assert '<div class="badge none">NO GATE</div>' in text
    assert "Masks" not in text and "Mask mAP" not in text
    for head in ("mAP@0.5", "mAP@0.5-0.95", "Mean Recall"):
        assert f"<th>{head}</th>" in text


@pytest.mark.slow
def test_single_model_run(tmp_path_factory, shapes_small):
    out = rd.real_run(tmp_path_factory, "seg", shapes_small, single=True)
    data = rd.load_run(out, shapes_small)
    assert not data["summary"]["deltas"]
    text = render_report(data)
    assert_self_contained(text)
    assert "Δ" not in text.split('id="per-class"')[0].split('id="table"')[1]  # no Δ row
    assert "single model" in text and 'alt="per-class AP"' in text  # AP per class instead of deltas
    assert {"pr", "scores", "gallery"} <= _Page(text).ids()
    assert text.count('src="data:image/jpeg;base64,') == len(data["gallery"]) > 0


def test_many_variants_table_holds_every_row_and_a_heatmap(big_dir):
    data = rd.synthetic(big_dir, n_images=500, n_classes=20, n_compared=5, seg=True, gallery_n=3)
    text = render_report(data)
    assert_self_contained(text)
    head = text.split('id="table"')[1].split("</section>")[0]
    for m in data["summary"]["models"]:
        assert m["label"] in head
    for d in data["summary"]["deltas"]:
        assert f"Δ {d['model']} − {d['reference']}" in head
    assert 'alt="per-class delta AP, all compared models"' in text
    assert text.count('alt="per-class delta AP') == 2  # the heatmap and the worst model's own bars
    # every variant in the per-class tables, every panel of the gallery capped at GALLERY_PANELS
    assert text.count("<th>Δ yolo-int8-v4<br>AP@.5:.95</th>") == 2
    assert text.count('src="data:image/jpeg;base64,') == 3 * report_html.GALLERY_PANELS


def test_under_5mb_at_5000_images(big_dir):
    for seg, n_compared in ((False, 1), (True, 3)):
        data = rd.synthetic(big_dir, n_images=5000, n_classes=80, n_compared=n_compared, seg=seg, gallery_n=40)
        text = render_report(data)
        size = len(text.encode("utf-8"))
        assert size < 5_000_000, size
        assert text.count('class="gitem"') == GALLERY_MAX  # the gallery is capped
        assert "first 12 of 40" in text
        assert text.count("<tr>") >= 80  # every class in the per-class table
        assert_self_contained(text)


def test_deterministic(big_dir):
    data = rd.synthetic(big_dir, n_images=300, n_classes=12, n_compared=2, seg=True, gallery_n=4)
    a = render_report(data)
    assert render_report(copy.deepcopy(data)) == a
    # and in a fresh interpreter (hash seeds, font caches, matplotlib state)
    code = ("import hashlib, sys; from pathlib import Path; from tests import report_data as rd; "
            "from validator.report.html import render_report; "
            f"d = rd.synthetic(Path({str(big_dir)!r}), n_images=300, n_classes=12, n_compared=2, seg=True, "
            "gallery_n=4); sys.stdout.write(hashlib.sha256(render_report(d).encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin", "MPLBACKEND": "pdf",
                              "HOME": os.environ.get("HOME", "/tmp")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == hashlib.sha256(a.encode()).hexdigest()
    assert not re.search(r"20\d\d-\d\d-\d\d[ T]\d\d:\d\d", a)  # no clock in the page


@pytest.mark.slow
def test_deterministic_real_run(seg_data, seg_html):
    assert render_report(copy.deepcopy(seg_data)) == seg_html


# ------------------------------------------------------------------------------------------ details
def test_delta_colours_have_a_neutral_band():
    md = ("**title**\n\n| Model | A | B | C | D | E |\n|---|---|---|---|---|---|\n"
          "| m | 50.00% | 1.00% | n/a | 2% | 3% |\n"
          "| Δ x − m | -4.34 pts | -0.49 pts | +0.20 pts | +0.80 pts | +2.00 pts |\n\n"
          "note line\n\nTiming, ms\n- a: 1\n")
    blocks = report_html._md_blocks(md)
    assert [k for k, _ in blocks] == ["text", "table", "text", "text", "text"]
    table = report_html._md_table(blocks[1][1])
    assert '<td class="num dn2" data-v="-4.34">-4.34 pts</td>' in table
    assert '<td class="num d0" data-v="-0.49">-0.49 pts</td>' in table
    assert '<td class="num d0" data-v="0.2">+0.20 pts</td>' in table
    assert '<td class="num dp1" data-v="0.8">+0.80 pts</td>' in table
    assert '<td class="num dp2" data-v="2">+2.00 pts</td>' in table
    assert '<tr class="delta">' in table


def test_hostile_names_are_escaped_and_missing_images_drawn_grey(big_dir):
    data = rd.synthetic(big_dir, n_images=50, n_classes=4, n_compared=1, gallery_n=1)
    evil = '<script>alert("x")</script><img src="https://evil.example/x.png">'
    data["summary"]["models"][1]["label"] = evil
    data["summary"]["dataset"]["categories"][0]["name"] = evil
    data["gallery"][0]["path"] = str(big_dir / "does-not-exist.jpg")
    data["gallery"][0]["note"] = evil
    text = render_report(data)
    assert evil not in text and "&lt;script&gt;" in text
    assert_self_contained(text)
    assert text.count('src="data:image/jpeg;base64,') == 2


def test_self_contained_check_catches_external_references():
    ok = render_report(rd.synthetic(Path("/nonexistent"), n_images=10, n_classes=2, gallery_n=0))
    assert_self_contained(ok)
    for bad in ('<img src="https://x.example/a.png">', '<link rel="stylesheet" href="s.css">',
                '<script src="a.js"></script>', '<div style="background:url(//x.example/a.png)"></div>',
                '<a href="http://x.example">x</a>'):
        with pytest.raises(AssertionError):
            assert_self_contained(ok.replace("<main>", "<main>" + bad))
