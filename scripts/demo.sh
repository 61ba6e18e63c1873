#!/usr/bin/env bash
# Set up (first run only), then the main job, offline: train LeNet-5 on the MNIST-small set embedded in
# the package (about half a minute on 2 CPU cores), evaluate it, export it to a verified ONNX file and to
# int8 (accuracy checked against fp32 on the test split), and
# classify 100 held-out test digits with the fastest verified precision and runtime here.
source "$(dirname "$0")/setup.sh"
set -x
zoo --version
RUN="runs/lenet5-demo-$(date +%Y%m%d-%H%M%S)"
zoo train lenet --output "$RUN"
zoo evaluate "$RUN"
zoo export "$RUN" --int8
python scripts/sample_digits.py runs/demo-digits --per-class 10
zoo classify "$RUN" runs/demo-digits --format table --output "$RUN/predictions.txt"
tail -n 3 "$RUN/predictions.txt"
