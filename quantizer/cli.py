"""`quantize` command line (not built yet: the quantizer issue delivers it)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("quantize: not available yet in this version of qharness", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
