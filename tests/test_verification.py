"""The verification record (zoo/verification.py): what `zoo export --int8` writes into the cards and
`auto` reads back, through one type, in the JSON shape cards have always carried."""

import json

import pytest

from zoo.card import ModelCard
from zoo.verification import Speed, Verification

# a record as export/quantize.py writes it (OpenVINO and ONNX Runtime installed, bf16 native)
WRITTEN = {
    "data": "mnist",
    "split": "test",
    "n": 2000,
    "max_accuracy_drop": 1.0,
    "accuracy": {"fp32": 0.981, "int8": 0.9795, "bf16": 0.981},
    "by_runtime": {
        "fp32": {"onnxruntime": 0.981, "openvino": 0.981},
        "int8": {"onnxruntime": 0.98, "openvino": 0.9795},
        "bf16": {"openvino": 0.981},
    },
    "verified": ["fp32", "int8", "bf16"],
    "speed": {
        "cpu": "AMD EPYC 9B14",
        "batch_size": 64,
        "img_s": {"fp32 on onnxruntime": 4100.5, "int8 on onnxruntime": 2900.1, "int8 on openvino": 5200.0},
    },
    "int8_agreement": 0.998,
}


def card(record=None) -> ModelCard:
    c = ModelCard("lenet5", 10, 1, [28, 28], [str(i) for i in range(10)], [0.5], [0.5])
    if record is not None:
        c.provenance["verification"] = record
    return c


def test_a_written_record_reads_and_writes_back_the_same():
    v = Verification.from_card(card(json.loads(json.dumps(WRITTEN))))
    assert v.verified == ["fp32", "int8", "bf16"] and v.accuracy["int8"] == 0.9795
    assert v.speed.of("int8", "openvino") == 5200.0 and v.speed.of("bf16", "openvino") is None
    assert v.int8_agreement == 0.998 and v.images() == "2,000 test images"
    assert v.to_dict() == WRITTEN
    assert list(v.to_dict()) == list(WRITTEN)  # the same keys, in the same order
    written = card()
    v.write(written)
    assert Verification.from_card(written) == v


def test_speeds_are_keyed_by_precision_and_runtime():
    """The key string is the record's own business: callers give and ask (precision, runtime)."""
    speed = Speed("Some CPU", 64, {("int8", "openvino"): 5200.04, ("bf16", "openvino"): None})
    assert speed.to_dict() == {"cpu": "Some CPU", "batch_size": 64, "img_s": {"int8 on openvino": 5200.0}}
    assert Speed.from_dict(speed.to_dict()) == Speed("Some CPU", 64, {("int8", "openvino"): 5200.0})
    odd = Speed.from_dict({"img_s": {"int8": 1.0, " on openvino": 2.0, "fp32 on onnxruntime": 3.0}})
    assert odd.img_s == {("fp32", "onnxruntime"): 3.0}  # what is not a key is not read as one


@pytest.mark.parametrize(
    "record",
    [
        # before the speeds were recorded
        {k: v for k, v in WRITTEN.items() if k not in ("speed", "int8_agreement")},
        # written by hand, or by a version that kept only what `auto` needed
        {"split": "test", "n": 100, "accuracy": {"fp32": 0.9, "bf16": 0.9}, "verified": ["fp32", "bf16"]},
        {"speed": {"cpu": "Some CPU", "img_s": {"bf16 on openvino": 1000.0}}},
    ],
)
def test_records_written_before_still_read(record):
    v = Verification.from_card(card(record))
    assert v.verified == record.get("verified", ["fp32"])
    assert v.accuracy == record.get("accuracy", {}) and v.n == record.get("n", 0)
    assert v.speed.cpu == record.get("speed", {}).get("cpu")
    assert v.speed.batch_size is None and v.int8_agreement is None


def test_no_record_is_none():
    assert Verification.from_card(card()) is None
    assert Verification.from_card(card("not a record")) is None
    assert Verification().verified == ["fp32"] and Verification(n=5, split="all").images() == "5 images"
