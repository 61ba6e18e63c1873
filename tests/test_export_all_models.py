"""Every registered model exports to ONNX and matches PyTorch on ONNX Runtime (batch 2; that the
batch axis is dynamic is held by tests/test_export.py, which runs other batch sizes).

The large networks run at a reduced input size where the architecture allows it (their classifier
sizes do not depend on it); their weights are random, with batch-norm statistics taken from one
random batch so that the logits depend on the input (otherwise a deep random network's logits are
its last bias, and any export would "match").
"""

import numpy as np
import onnx
import pytest
import torch

from export.onnx import INPUT_NAME, OUTPUT_NAME, export_model, random_batch, torch_logits
from zoo.card import ONNX_METADATA_KEY, ModelCard
from zoo.models import create, list_models

SIZE = {"lenet5": 28, "alexnet_v1": 67}  # the rest at 64x64


def lively(model, card, seed=0):
    """Batch-norm running statistics from one random batch (train-mode forward, cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if bns:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        with torch.no_grad():
            model(torch.from_numpy(random_batch(card, 4, seed)))
    return model.eval()


@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_and_verifies(name, tmp_path):
    size = SIZE.get(name, 64)
    card = ModelCard.for_model(name, input_size=[size, size], num_classes=10)
    torch.manual_seed(0)
    kwargs = {"aux_logits": True} if name == "googlenet" else {}  # exported without its aux heads
    model = lively(create(name, num_classes=10, **kwargs), card)
    x = random_batch(card, 2, seed=1)  # the batch export_model verifies on
    ref = torch_logits(model, x)
    assert np.abs(ref[0] - ref[1]).max() > 1e-3 * np.abs(ref).max(), "logits must depend on the input"
    path = tmp_path / f"{name}.onnx"
    v = export_model(model, card, path, verify_batch=2, log=None)
    assert v.ok and v.batch == 2 and v.scale == pytest.approx(np.abs(ref).max())

    proto = onnx.load(str(path), load_external_data=False)
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value  # symbolic batch axis
    assert [d.dim_value for d in dims[1:]] == card.input_shape
    meta = {p.key: p.value for p in proto.metadata_props}
    assert set(meta) == {ONNX_METADATA_KEY} and ModelCard.from_json(meta[ONNX_METADATA_KEY]) == card
    if name == "googlenet":
        names = {i.name for i in proto.graph.initializer} | {n.name for n in proto.graph.node}
        assert not any("aux" in n for n in names)
