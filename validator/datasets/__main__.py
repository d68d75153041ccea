"""python -m validator.datasets {shapes,fetch}: make or fetch a COCO-format dataset."""

from __future__ import annotations

import sys
from pathlib import Path

from validator.cliparse import ArgumentParser


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m validator.datasets", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("shapes", help="generate the deterministic synthetic shapes dataset")
    s.add_argument("--out", required=True, type=Path, help="output folder (gets images/ and annotations.json)")
    s.add_argument("--images", type=int, default=200, help="number of images (default 200)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--coco-like", action="store_true",
                   help="ids, file names, photo sizes, the 80 category ids and objects per image shaped like "
                        "COCO val2017 (crowd annotation ids near 9e11)")

    from validator.datasets.fetch import recipe_names

    names = recipe_names()
    f = sub.add_parser("fetch", help="download a dataset with checksum checks (resumable)",
                       description="Download a dataset recipe's files, verify their sha256, unzip them; an "
                                   "interrupted download resumes. Recipes: " + ", ".join(names) + ".")
    f.add_argument("name", help=f"a recipe ({', '.join(names)}) or the path of a recipe JSON")
    f.add_argument("--out", required=True, type=Path, help="output folder")
    f.add_argument("--base-url", default=None, help="mirror to download from instead of the recipe's URLs")

    args = p.parse_args(argv)
    if args.command == "shapes":
        from validator.datasets.shapes import ShapesConfig, generate

        if args.images < 1:
            p.error("--images must be >= 1")
        path = generate(args.out, ShapesConfig(images=args.images, seed=args.seed, coco_like=args.coco_like),
                        progress=sys.stderr.isatty())
        print(path)
        return 0
    from validator.datasets.fetch import FetchError, fetch

    try:
        path = fetch(args.name, args.out, base_url=args.base_url, progress=sys.stderr.isatty())
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
