"""The tolerance of the tests' one repeated comparison: two float32 computations of a LeNet's logits.

u = 2^-24 ~ 6e-8 is float32's unit roundoff. Each LeNet layer is a dot product of K float32 terms
(K = 25 conv1, 150 conv2, 400, 120, 84 in the fully connected layers), and PyTorch, ONNX Runtime,
OpenVINO, another batch composition or thread count each sum it in their own order (blocking, FMA,
SIMD width: AVX2, AVX-512, AMX). Each sum then differs by ~sqrt(K) u of sum |terms| (K u at worst):
summed over the five layers ~57 u ~ 3.4e-6, a few times that where the terms cancel in the logits:
~1e-5 of the largest |logit|. Measured on the AVX-512 EPYC (1 and 2 threads, batches 1 to 40):
PyTorch, ONNX Runtime and OpenVINO within 1.5-3.3e-7 of the largest |logit| (ONNX Runtime bit-identical
whatever the batch). LOGITS_REL = 5e-5 of the largest |logit| in the batch is above that estimate,
and below every real difference measured: fp16 arithmetic (model.fp16.onnx) 2-3e-4, bf16 2-3e-3,
a swapped class 0.2, a dropped bias 0.57, another image 1.6, input left unstandardized 0.3-0.7.
"""

import numpy as np

LOGITS_REL = 5e-5
ANSWER_ROUNDING = 0.5e-6  # zoo.answer rounds a probability to 6 decimals


def assert_logits_close(got: np.ndarray, want: np.ndarray, rel: float = LOGITS_REL) -> None:
    """max |got - want| <= rel x max |want|, the batch's largest logit setting the scale of the sums."""
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.abs(got.astype(np.float64) - want).max(initial=0) / np.abs(want).max(initial=0)
    assert err <= rel, f"logits differ by {err:.3g} of the largest |logit| (tolerance {rel:g})"


def probability_atol(logits: np.ndarray) -> float:
    """How far a softmax probability may move when its logits move by up to LOGITS_REL x max |logit|:
    dp_i = p_i (dz_i - sum_j p_j dz_j), so |dp_i| <= 2 p_i (1 - p_i) max |dz| <= max |dz| / 2; plus
    the answer's rounding to 6 decimals."""
    return 0.5 * LOGITS_REL * float(np.abs(logits).max()) + ANSWER_ROUNDING
