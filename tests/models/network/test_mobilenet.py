"""models.network.mobilenet: the torch MobileNetV2 / DeepLab-v3 with the shipped file's weights computes
what onnxruntime computes from the file, block by block (issue 21's acceptance: 1e-4)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from models.network.mobilenet import (
    DEEPLAB_PERSON_CLASS,
    DeepLabV3,
    MobileNetV2Encoder,
    deeplab_conv_weights,
    deeplab_v3,
    load_deeplab_weights,
)
from models.utils.assets import DEEPLAB_MODEL, require
from tests.conftest import SAMPLE

SIZE = 257  # the file's input


def block_outputs(graph) -> list[str]:
    """The output name of each of the 17 blocks: its Add, or its projection when it has none."""
    names = []
    for k in range(17):
        prefix = "MobilenetV2/expanded_conv/" if k == 0 else f"MobilenetV2/expanded_conv_{k}/"
        names.append([n for n in graph.node if n.name.startswith(prefix)][-1].output[0])
    return names


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """(input (1,3,257,257) in [-1, 1], onnxruntime's 17 block outputs, its logits at H/8)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(require(DEEPLAB_MODEL)))
    wanted = [*block_outputs(model.graph), "logits/semantic/BiasAdd"]
    for name in wanted:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rgb = cv2.cvtColor(cv2.imread(str(SAMPLE / "coco" / "val2017" / "000000000785.jpg")), cv2.COLOR_BGR2RGB)
    nhwc = (cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1.0)[None]
    outputs = session.run(wanted, {session.get_inputs()[0].name: nhwc})
    return nhwc.transpose(0, 3, 1, 2).copy(), outputs[:-1], outputs[-1]


def test_the_encoder_matches_onnxruntime_block_by_block(reference):
    image, blocks, _ = reference
    encoder = MobileNetV2Encoder()
    load_deeplab_weights(encoder, require(DEEPLAB_MODEL))
    with torch.no_grad():
        ours = encoder.eval()(torch.from_numpy(image))
    assert [tuple(t.shape[1:]) for t in ours] == [b.shape[1:] for b in blocks]
    assert [ours[k].shape[-1] for k in MobileNetV2Encoder.scales] == [129, 65, 33]  # H/2, H/4, H/8
    for k, (mine, theirs) in enumerate(zip(ours, blocks, strict=True)):
        # float32 sums differ by kernel (oneDNN on Intel and AMD): a tolerance at the block's scale
        atol = max(1e-4, 3e-5 * float(np.abs(theirs).max()))
        np.testing.assert_allclose(mine.numpy(), theirs, atol=atol, rtol=1e-4, err_msg=f"block {k}")


def test_the_whole_deeplab_matches_onnxruntime_and_sees_the_person(reference):
    image, _, logits = reference
    net = deeplab_v3(require(DEEPLAB_MODEL))
    with torch.no_grad():
        ours = net(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(ours, logits, atol=max(1e-4, 3e-5 * float(np.abs(logits).max())), rtol=1e-4)
    person = ours[0].argmax(axis=0) == DEEPLAB_PERSON_CLASS
    assert 0.05 < person.mean() < 0.8  # 000000000785.jpg: a skier filling part of the photo


def test_weights_that_do_not_fit_are_refused():
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in DeepLabV3().modules())
    assert len(deeplab_conv_weights(require(DEEPLAB_MODEL))) == convs == 55  # 51 encoder + 4 head
    wider = ((1, 8, 1, 1), (6, 24, 2, 1))  # block 1 wider than the file's
    with pytest.raises(ValueError, match="does not fit"):
        load_deeplab_weights(MobileNetV2Encoder(wider), require(DEEPLAB_MODEL))
