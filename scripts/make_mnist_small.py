"""Build zoo/data/mnist_small.npz: the embedded MNIST-small that `zoo train lenet` uses by default.

A stratified subset of the MNIST training set, in the spirit of the DIGITS lab's "MNIST small":
1,000 images per digit for training and 200 per digit for test, drawn (with a fixed seed) from the
first 50,000 training images only, so it never overlaps the last 10,000 that the full-MNIST benchmark
holds out as its test split. Deterministic: the same input files give the same bytes.

    python scripts/make_mnist_small.py [--mnist ../shared/datasets/mnist] [--output zoo/data/mnist_small.npz]
"""

from __future__ import annotations

import argparse
import io
import pathlib

import numpy as np

from zoo import atomic
from zoo.data.mnist import SMALL_FILE, load_dir

ROOT = pathlib.Path(__file__).resolve().parents[1]


def build(mnist_dir: pathlib.Path, per_class_train: int, per_class_test: int, pool: int, seed: int):
    images, labels = load_dir(mnist_dir)["train"]
    images, labels = images[:pool], labels[:pool]
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        train.append(idx[:per_class_train])
        test.append(idx[per_class_train : per_class_train + per_class_test])
    train, test = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    return {
        "x_train": images[train],
        "y_train": labels[train].astype(np.uint8),
        "x_test": images[test],
        "y_test": labels[test].astype(np.uint8),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--mnist",
        type=pathlib.Path,
        default=ROOT.parent / "shared" / "datasets" / "mnist",
        help="directory with train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz",
    )
    p.add_argument("--output", type=pathlib.Path, default=SMALL_FILE)
    p.add_argument("--train-per-class", type=int, default=1000)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--pool", type=int, default=50_000, help="draw from the first POOL training images")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    arrays = build(a.mnist, a.train_per_class, a.test_per_class, a.pool, a.seed)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic.write_bytes(a.output, buf.getvalue())
    print(
        f"{a.output}: {len(arrays['y_train'])} train + {len(arrays['y_test'])} test images, "
        f"{a.output.stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
