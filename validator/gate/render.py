"""A verdict rendered for CI: JUnit XML (one testcase per check and model) and markdown (the step summary,
table.md, report.html). Wording is one everywhere: a pass or failure is "clear of noise" when the limit
lies outside the check's interval, "within noise" when it lies inside."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from validator.gate.checks import Verdict
from validator.gate.spec import _num

_XML_BAD = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(s: Any) -> str:
    """Text XML 1.0 can hold (ElementTree escapes markup; characters XML cannot carry become '?')."""
    return _XML_BAD.sub("?", str(s))


def junit_xml(verdict: Verdict, suite_name: str) -> str:
    """JUnit XML: one ``<testcase>`` per check result (classname = model, name = the check), deterministic."""
    c = verdict.counts
    attrs = {"name": _x(suite_name), "tests": str(len(verdict.results)), "failures": str(c["failed"]),
             "errors": "0", "skipped": str(c["skipped"]), "time": "0"}
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(root, "testsuite", attrs)
    props = ET.SubElement(suite, "properties")
    for k, v in (("gate", verdict.gate), ("verdict", "passed" if verdict.passed else "failed"),
                 ("confidence", verdict.confidence), ("resamples", verdict.resamples)):
        if v is not None:
            ET.SubElement(props, "property", {"name": k, "value": _x(v)})
    for r in verdict.results:
        case = ET.SubElement(suite, "testcase", {"classname": _x(r.model or "gate"), "name": _x(f"{r.id}: {r.name}"),
                                                 "time": "0"})
        msg = _x(r.message(verdict.confidence))
        if r.passed is None:
            ET.SubElement(case, "skipped", {"message": _x(r.reason)})
        elif not r.passed:
            fail = ET.SubElement(case, "failure", {"message": msg, "type": r.kind})
            fail.text = msg
        out = ET.SubElement(case, "system-out")
        out.text = msg
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _md(s: Any) -> str:
    return str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def noise_label(r) -> str:
    """``, clear of noise`` / ``, within noise`` (a check with an interval), else nothing."""
    if r.outside_noise is None:
        return ""
    return ", clear of noise" if r.outside_noise else ", within noise"


def markdown(verdict: Verdict) -> str:
    """The checks as a markdown table and the verdict line (GITHUB_STEP_SUMMARY, the HTML report)."""
    level = f"{verdict.confidence * 100:g}% CI" if verdict.confidence else "CI"
    lines = [f"**{_md(verdict.headline)}**", ""]
    if verdict.name or verdict.gate:
        lines += [f"Gate: {_md(verdict.name or '')}{', ' if verdict.name and verdict.gate else ''}"
                  f"{'`' + _md(verdict.gate) + '`' if verdict.gate else ''}"
                  + (f", {verdict.resamples} bootstrap resamples" if verdict.resamples else ""), ""]
    lines += [f"| Check | Model | Value | Limit | {level} | Result |", "|---|---|---:|---:|---:|---|"]
    for r in verdict.results:
        check = f"{r.id} {_md(r.name)}"
        if r.passed is None:
            lines.append(f"| {check} | {_md(r.model)} | n/a | {r.op} {_num(r.limit)} {r.unit} | n/a "
                         f"| skipped: {_md(r.reason)} |")
            continue
        ci = f"{r.ci[0]:.2f} to {r.ci[1]:.2f}" if r.ci is not None else "n/a"
        res = ("pass" if r.passed else "**FAIL**") + noise_label(r)
        if r.kind == "max_class_drop":
            bad = [c for c in r.classes if c.status == "failed"]
            if bad:
                res += ": " + _md(", ".join(f"{c.name} {c.drop:.2f}" for c in bad[:3]))
            elif r.classes:
                judged = [c for c in r.classes if c.status != "too small"]
                if judged:
                    res += f": worst {_md(judged[0].name)} {judged[0].drop:.2f}"
            small = sum(1 for c in r.classes if c.status == "too small")
            if small:
                res += f"; {small} too small to judge"
        lines.append(f"| {check} | {_md(r.model)} | {r.value:.2f} {r.unit} | {r.op} {_num(r.limit)} {r.unit} "
                     f"| {ci} | {res} |")
    return "\n".join(lines) + "\n"
