"""Write digits of the embedded MNIST-small *test* split as PNG files, one folder per digit.

    python scripts/sample_digits.py digits/ --per-class 10

The demo classifies them (`zoo classify MODEL digits/`): the folder names are the labels, so classify
reports its accuracy. The test split is never used for training or model selection.
"""

import argparse
import pathlib

from PIL import Image

from zoo.data.mnist import load_small


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", type=pathlib.Path)
    ap.add_argument("--per-class", type=int, default=10)
    args = ap.parse_args()
    images, labels = load_small()["test"]
    for digit in range(10):
        folder = args.output / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        for i in (labels == digit).nonzero()[0][: args.per_class]:
            Image.fromarray(images[i]).save(folder / f"{i:04d}.png")
    print(f"wrote {10 * args.per_class} test digits to {args.output}/<digit>/")


if __name__ == "__main__":
    main()
