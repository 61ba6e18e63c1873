#!/usr/bin/env bash
# Set up (first run only), then the main job: train LeNet-5 on the MNIST-small set embedded in the
# package (no network, no files needed; about half a minute on 2 CPU cores) and evaluate it.
source "$(dirname "$0")/setup.sh"
set -x
zoo --version
zoo train lenet
zoo evaluate
