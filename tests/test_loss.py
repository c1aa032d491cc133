"""Tests of loss.py as a GPU runs it: no shape that depends on the data, no value read back by the host, and the
padded batch of data.collate (metrics.batch_targets) giving the loss of the per-image lists. The values of each
term are checked by hand in test_yolov1.py, test_yolov2.py and test_yolo9000.py."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import wordtree
import yolo9000
from loss import REGION_MAX_OBJECTS, yolov1_loss, yolov2_loss
from metrics import batch_targets


def xyxy(x, y, w, h):
    return [x - w / 2, y - h / 2, x + w / 2, y + h / 2]


TARGETS = [{"boxes": torch.tensor([xyxy(0.3, 0.4, 0.2, 0.3), xyxy(0.33, 0.45, 0.25, 0.35)]),
            "labels": torch.tensor([1, 2])},
           {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
           {"boxes": torch.tensor([xyxy(0.9, 0.1, 0.15, 0.1)]), "labels": torch.tensor([0])}]


def fake(mode, batch):
    return {k: mode.from_tensor(v) if torch.is_tensor(v) else v for k, v in batch.items()}


# -----------------------------------------------------------------------------
# FakeTensorMode: tensors with shapes and no values. .item(), bool(t), nonzero and boolean-mask indexing raise
# there (DataDependentOutputException, DynamicOutputShapeException): on a GPU each would make the host wait.

@pytest.mark.parametrize("seen, region", [(64, "60e952ba"), (12800, "c6afc7ff")])
def test_yolov2_loss_and_its_gradient_need_no_value_from_the_device(seen, region):
    raw, anchors = torch.randn(3, 2 * (5 + 4), 3, 4), torch.tensor([[1.0, 1.5], [2.5, 2.0]])
    batch = batch_targets(TARGETS, REGION_MAX_OBJECTS)             # in the loader's workers: real tensors
    with FakeTensorMode() as mode:
        raw = mode.from_tensor(raw).requires_grad_()
        terms = yolov2_loss(raw, fake(mode, batch), mode.from_tensor(anchors), seen, region=region)
        terms["total"].backward()
    assert raw.grad.shape == (3, 18, 3, 4) and terms["total"].shape == ()


def test_yolov1_loss_and_its_gradient_need_no_value_from_the_device():
    pred = torch.rand(3, 2, 2, 2 * 5 + 3)                          # S = 2, B = 2, C = 3
    batch = batch_targets(TARGETS)
    with FakeTensorMode() as mode:
        pred = mode.from_tensor(pred).requires_grad_()
        terms = yolov1_loss(pred, fake(mode, batch), B=2, C=3)
        terms["total"].backward()
    assert pred.grad.shape == (3, 2, 2, 13)


@pytest.mark.parametrize("rule", yolo9000.CLASSIFICATION_RULES)
def test_joint_loss_needs_no_value_from_the_device(rule):
    # A detection image and a classification image ("ellipse", node 3). The tree is a constant the loss copies to
    # the device once (wordtree.tree_on): real tensors here, hence allow_non_fake_inputs.
    tree = wordtree.make_tree(yolo9000.SHAPE_TREE["parents"], yolo9000.SHAPE_TREE["ids"])   # 7 nodes, 2 levels
    raw = torch.randn(2, 1 * (5 + 7), 1, 2)
    batch = batch_targets([{"boxes": torch.tensor([[0.5, 0.25, 1.0, 0.75]]), "labels": torch.tensor([4])},
                           {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "image_label": 3}],
                          REGION_MAX_OBJECTS)
    assert batch["image_label"].tolist() == [-1, 3] and batch["classification"].tolist() == [1]
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        raw = mode.from_tensor(raw).requires_grad_()
        terms = yolo9000.joint_loss(raw, fake(mode, batch), mode.from_tensor(torch.ones(1, 2)), 100_000, tree,
                                    classification_rule=rule)        # darknet's rules: the noobj_image term too
        terms["total"].backward()
    assert tree["levels"] == 2 and raw.grad.shape == (2, 12, 1, 2) and terms["noobj_image"].shape == ()


# -----------------------------------------------------------------------------
# The padded batch

def test_batch_targets_pads_floors_and_caps():
    # image 0: 33 boxes, the third of them 0.0005 wide (under .001: dropped), so the first 30 kept are boxes 0, 1,
    # 3, ..., 30; image 1: none
    boxes = torch.tensor([xyxy(0.5, 0.5, 0.1 + 0.01 * k, 0.2) for k in range(33)])
    boxes[2] = torch.tensor(xyxy(0.5, 0.5, 0.0005, 0.2))
    batch = batch_targets([{"boxes": boxes, "labels": torch.arange(33), "path": "a.jpg"},
                           {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "path": "b.jpg"}],
                          max_objects=30, min_size=0.001)
    assert batch["boxes"].shape == (2, 30, 4) and batch["labels"].shape == batch["valid"].shape == (2, 30)
    assert batch["labels"][0].tolist() == [0, 1] + list(range(3, 31)) and batch["valid"][0].all()
    assert not batch["valid"][1].any() and batch["boxes"][1].abs().sum() == 0
    assert batch["path"] == ["a.jpg", "b.jpg"]
    # without a cap: as many slots as the fullest image (32 after the floor), at least one
    assert batch_targets([{"boxes": boxes, "labels": torch.arange(33)}], min_size=0.001)["boxes"].shape == (1, 32, 4)
    assert batch_targets([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}])["valid"].shape == (1, 1)


def test_yolov2_loss_reads_the_first_30_large_objects_however_padded():
    # 33 objects in one image, one too small: the loss of the list, of the list cut by hand to what darknet's layer
    # reads, and of the padded batch (capped or not) are the same, term by term and in the gradient.
    torch.manual_seed(0)
    centres = torch.rand(33, 2) * 0.8 + 0.1
    boxes = torch.tensor([xyxy(x, y, 0.1, 0.15) for x, y in centres.tolist()])
    boxes[5, 2] = boxes[5, 0] + 0.0005
    labels = torch.arange(33) % 4
    raw, anchors = torch.randn(1, 2 * 9, 5, 5), torch.tensor([[1.0, 1.5], [2.5, 2.0]])
    by_hand = [i for i in range(33) if i != 5][:30]
    cases = [[{"boxes": boxes, "labels": labels}], [{"boxes": boxes[by_hand], "labels": labels[by_hand]}],
             batch_targets([{"boxes": boxes, "labels": labels}]), batch_targets([{"boxes": boxes, "labels": labels}],
                                                                               REGION_MAX_OBJECTS, 0.001)]
    results = []
    for targets in cases:
        x = raw.clone().requires_grad_()
        terms = yolov2_loss(x, targets, anchors, seen=64)
        terms["total"].backward()
        results.append((terms, x.grad))
    for terms, grad in results[1:]:
        assert all(torch.allclose(terms[k], results[0][0][k], rtol=1e-6, atol=1e-7) for k in terms)
        assert torch.allclose(grad, results[0][1], atol=1e-7)
    assert results[0][0]["xy"] > 0


# -----------------------------------------------------------------------------
# On a GPU (bench/gpu_check.sh: pytest -m cuda): the same values, and not one synchronization

@pytest.mark.cuda
def test_losses_on_cuda_equal_the_cpu_and_never_synchronize():
    torch.manual_seed(0)
    raw, anchors, pred = torch.randn(3, 2 * (5 + 4), 3, 4), torch.tensor([[1.0, 1.5], [2.5, 2.0]]), torch.rand(3, 2, 2, 13)
    region, cells = batch_targets(TARGETS, REGION_MAX_OBJECTS, 0.001), batch_targets(TARGETS)
    on_cpu = yolov2_loss(raw, region, anchors, 64), yolov1_loss(pred, cells, B=2, C=3)
    cuda = [{k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()} for batch in (region, cells)]
    raw_cuda, pred_cuda = raw.cuda().requires_grad_(), pred.cuda().requires_grad_()
    anchors_cuda = anchors.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")             # any synchronizing call raises
    try:
        on_gpu = yolov2_loss(raw_cuda, cuda[0], anchors_cuda, 64), yolov1_loss(pred_cuda, cuda[1], B=2, C=3)
        (on_gpu[0]["total"] + on_gpu[1]["total"]).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    for cpu_terms, gpu_terms in zip(on_cpu, on_gpu):
        assert all(torch.allclose(gpu_terms[k].cpu(), cpu_terms[k], rtol=1e-5, atol=1e-6) for k in cpu_terms)
