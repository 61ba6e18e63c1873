#!/usr/bin/env bash
# Set up (first run only) and show the zoo: the models it has and the layers of LeNet-5.
source "$(dirname "$0")/setup.sh"
set -x
zoo --version
zoo models
zoo summary lenet
