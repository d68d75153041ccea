"""After `nox -s demo`: the checkout holds no change but the committed example reports' timing lines.

The demo rewrites reports/demo-*/ (report.html, table.md): on the same code and data every number in them
is reproduced byte for byte, only host timings differ. CI runs this after each demo run; exit 1 lists what
else changed (a stale committed report, a non-deterministic output, a file the demo should not touch).
"""

from __future__ import annotations

import subprocess
import sys

TIMING_PREFIXES = ('<section id="timing">', '<section id="cost">')  # report.html: each host-timed section is one line


def _timing_line(path: str, line: str) -> bool:
    if path.endswith("table.md"):
        return line.startswith("- ") and "loop wall" in line
    return line.startswith(TIMING_PREFIXES)


def main() -> int:
    status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=True).stdout
    bad = [ln for ln in status.splitlines() if not (ln.startswith(" M reports/demo-")
                                                    and ln.endswith(("report.html", "table.md")))]
    diff = subprocess.run(["git", "diff", "-U0", "--", "reports/"], capture_output=True, text=True, check=True).stdout
    path = ""
    for ln in diff.splitlines():
        if ln.startswith("+++ b/"):
            path = ln[6:]
        elif ln.startswith(("+", "-")) and not ln.startswith(("+++", "---")) and not _timing_line(path, ln[1:]):
            bad.append(f"{path}: {ln[:160]}")
    if bad:
        print("the demo changed more than timing lines:", *bad[:20], sep="\n  ", file=sys.stderr)
        return 1
    print("demo left the checkout clean but for timing lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
