"""Progress of long work: a tqdm bar on a terminal, a plain line every few seconds anywhere else (CI logs).

Why both: a bar redraws with carriage returns, which a CI log shows as one endless line or nothing at
all until the end; a 20-minute COCO run must still say how far it is. The line carries the count, the
rate and the time left, e.g. ``validate: 1200/5000 images (24%), 23.4 img/s, ETA 2m42s``.
"""

from __future__ import annotations

import os
import sys
import time

LINE_EVERY_S = 5.0


def _eta(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """``with Progress(total, "validate", "images") as p: ... p.update()``; ``quiet`` silences it."""

    def __init__(self, total: int, desc: str, unit: str = "images", *, quiet: bool = False,
                 stream=None, every_s: float | None = None, tty: bool | None = None):
        self.total, self.desc, self.unit = total, desc, unit
        self.short = {"images": "img"}.get(unit, unit)
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.every_s = LINE_EVERY_S if every_s is None else every_s
        if tty is None:
            tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not os.environ.get("CI")
        self.tty = tty
        self.bar = None
        self.done = 0
        self.t0 = self.last = time.monotonic()

    def __enter__(self) -> Progress:
        if not self.quiet and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit=self.short, file=self.stream)
        return self

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every_s and self.done < self.total:
            self.last = now
            self._line(now)

    def _line(self, now: float, final: bool = False) -> None:
        el = max(now - self.t0, 1e-9)
        rate = self.done / el
        pct = 100.0 * self.done / self.total if self.total else 100.0
        tail = f"in {_eta(el)}" if final else f"ETA {_eta((self.total - self.done) / rate) if rate else '?'}"
        print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({pct:.0f}%), {rate:.1f} "
              f"{self.short}/s, {tail}", file=self.stream, flush=True)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        elif not self.quiet and exc[0] is None and time.monotonic() - self.t0 >= self.every_s:
            self._line(time.monotonic(), final=True)
