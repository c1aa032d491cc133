"""Tests of wordtree.py and yolo9000.py (its joint data too): the tree file, the grouped softmax, the path probabilities and
the descent on the paper's Figure 5 example, the joint loss by hand on one detection and one classification image,
the yolo9000 network's shapes and file size by arithmetic, the datasets, and detect.py's YOLO9000 options."""
import math
import os

import pytest
import torch

import detect
import yolo9000
import darknet
import wordtree

# -----------------------------------------------------------------------------
# The tree file

# Figure 5's path, as a darknet tree file (parents first, siblings next to each other); group of each node in [].
FIGURE5 = [("physical object", -1),                                  # 0  [0]
           ("animal", 0), ("artifact", 0),                           # 1, 2  [1]
           ("mammal", 1), ("bird", 1),                               # 3, 4  [2]
           ("dog", 3), ("cat", 3),                                   # 5, 6  [3]
           ("hunting dog", 5), ("toy dog", 5),                       # 7, 8  [4]
           ("terrier", 7), ("hound", 7),                             # 9, 10  [5]
           ("Norfolk terrier", 9), ("Yorkshire terrier", 9), ("Bedlington terrier", 9)]   # 11, 12, 13  [6]
# Pr(node | parent) along Norfolk terrier's path and for its siblings (each group sums to 1)
CONDITIONAL = [1.0, 0.9, 0.1, 0.8, 0.2, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2, 0.5, 0.3, 0.2]


def write_tree(path, nodes):
    with open(path, "w") as f:
        f.write("".join(f"{name.replace(' ', '_')} {parent}\n" for name, parent in nodes))
    return str(path)


@pytest.fixture
def figure5(tmp_path):
    return wordtree.read_tree(write_tree(tmp_path / "figure5.tree", FIGURE5))


def test_read_tree_builds_darknets_groups(figure5):
    t = figure5
    assert t["ids"][11] == "Norfolk_terrier"
    assert t["parent"].tolist() == [p for _, p in FIGURE5]
    assert t["offset"].tolist() == [0, 1, 3, 5, 7, 9, 11]            # tree.c group_offset
    assert t["size"].tolist() == [1, 2, 2, 2, 2, 2, 3]               # tree.c group_size
    assert t["group"].tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 6]
    assert t["child"].tolist() == [1, 2, -1, 3, -1, 4, -1, 5, -1, 6, -1, -1, -1, -1]   # the group of the children
    assert t["leaf"].nonzero().flatten().tolist() == [2, 4, 6, 8, 10, 11, 12, 13]
    assert wordtree.path(t, 11) == [0, 1, 3, 5, 7, 9, 11]


def test_read_tree_refuses_what_darknet_would_misread(tmp_path):
    split = write_tree(tmp_path / "split.tree", [("a", -1), ("b", -1), ("c", 0), ("d", 1), ("e", 0)])
    with pytest.raises(ValueError, match=r"split.tree:5: the children of node 0 are not contiguous"):
        wordtree.read_tree(split)
    with pytest.raises(ValueError, match=r":2: parent 3 of node 1"):
        wordtree.read_tree(write_tree(tmp_path / "late.tree", [("a", -1), ("b", 3)]))
    (tmp_path / "bad.tree").write_text("n001 -1\nn002\n")
    with pytest.raises(ValueError, match=r"bad.tree:2: expected '<id> <parent index>'"):
        wordtree.read_tree(str(tmp_path / "bad.tree"))


# -----------------------------------------------------------------------------
# §4: the grouped softmax and the path probabilities

def test_tree_softmax_is_one_softmax_per_group(figure5):
    logits = torch.zeros(14)
    logits[11:14] = torch.tensor([math.log(5), math.log(3), math.log(2)])   # e^l = 5, 3, 2 -> 5/10, 3/10, 2/10
    logits[1] = 7.0                                                         # group {1, 2}: e^7 / (e^7 + e^0)
    p = wordtree.tree_softmax(logits, figure5)
    assert p[0].item() == pytest.approx(1.0)                                # a group of one
    assert p[1].item() == pytest.approx(1 / (1 + math.exp(-7)))
    assert p[11:14].tolist() == pytest.approx([0.5, 0.3, 0.2])
    assert p[5:7].tolist() == pytest.approx([0.5, 0.5])                     # equal logits
    # not one softmax over all 14: that would give e^7 / (e^7 + 13 + ...) to node 1, and 1/14-ish to the rest
    assert p.sum().item() == pytest.approx(7.0)                             # 7 groups, each summing to 1


def test_path_probability_is_the_product_down_the_path(figure5):
    # Pr(Norfolk terrier) = Pr(Norfolk terrier | terrier) · Pr(terrier | hunting dog) · ... · Pr(animal | physical
    # object) · Pr(physical object) (§4), = .5 · .8 · .7 · .9 · .8 · .9 · 1
    absolute = wordtree.absolute_probabilities(torch.tensor(CONDITIONAL), figure5)
    assert absolute[11].item() == pytest.approx(0.5 * 0.8 * 0.7 * 0.9 * 0.8 * 0.9)       # 0.18144
    assert absolute[5].item() == pytest.approx(0.9 * 0.8 * 0.9)                          # dog: 0.648
    assert absolute[6].item() == pytest.approx(0.1 * 0.8 * 0.9)                          # cat: 0.072
    # the softmax of log-probabilities gives them back, so the two steps compose
    back = wordtree.tree_softmax(torch.tensor(CONDITIONAL).log(), figure5)
    assert back.tolist() == pytest.approx(CONDITIONAL)


def test_descent_on_figure5_paper_and_darknet(figure5):
    absolute = wordtree.absolute_probabilities(torch.tensor(CONDITIONAL), figure5)[None]   # (1, 14)
    # paper (Pr(node) > threshold): 1, .9, .72, .648 pass .5; hunting dog .4536 does not -> "dog" (5)
    assert wordtree.descend(absolute, figure5, 0.5, "paper").tolist() == [5]
    # darknet (p·Pr(node), p the product of the Pr() taken): 1·1, 1·.9, .9·.72 = .648 pass; dog .648·.648 = .4199
    # does not -> back to the last node taken, "mammal" (3)
    assert wordtree.descend(absolute, figure5, 0.5, "darknet").tolist() == [3]
    # at .3: paper: .4536, terrier .36288 pass, Norfolk .18144 not -> terrier (9);
    # darknet: dog .4199 passes (p = .4199), hunting dog .4199·.4536 = .1905 not -> dog (5)
    assert wordtree.descend(absolute, figure5, 0.3, "paper").tolist() == [9]
    assert wordtree.descend(absolute, figure5, 0.3, "darknet").tolist() == [5]
    # at 0 every step passes: the leaf, Norfolk terrier; above 1 even the root fails: the best root is kept
    assert wordtree.descend(absolute.repeat(2, 1), figure5, 0.0).tolist() == [11, 11]
    assert wordtree.descend(absolute, figure5, 1.5).tolist() == [0]


def test_path_nll_is_minus_log_pr_and_its_gradient_is_darknets_delta(figure5):
    logits = torch.tensor(CONDITIONAL).log()[None].requires_grad_()          # (1, 14)
    nll = wordtree.path_nll(wordtree.tree_log_softmax(logits, figure5), torch.tensor([11]), figure5)
    assert nll.item() == pytest.approx(-math.log(0.18144), rel=1e-5)
    nll.sum().backward()
    # delta_region_class: in each group on the path, (1 - p) for the node on the path, (0 - p) for the others;
    # the gradient is minus that: p - 1 and p
    expected = torch.tensor(CONDITIONAL) - torch.tensor([1., 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0])
    assert logits.grad[0].tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    # a "dog" label: no error below dog (§4: "we do not assign any error to predictions further down the tree")
    logits.grad = None
    wordtree.path_nll(wordtree.tree_log_softmax(logits, figure5), torch.tensor([5]), figure5).sum().backward()
    assert logits.grad[0, 7:].abs().max().item() == 0
    assert logits.grad[0, 5].item() == pytest.approx(0.9 - 1)


# -----------------------------------------------------------------------------
# §4 joint training, by hand: one detection image, one classification image

def test_joint_loss_one_detection_and_one_classification_image():
    tree = wordtree.make_tree(yolo9000.SHAPE_TREE["parents"], yolo9000.SHAPE_TREE["ids"])  # 7 nodes
    # round 0, polygon 1 | circle 2, ellipse 3 (round's) | triangle 4, rectangle 5, pentagon 6 (polygon's)
    A, n, H, W = 1, 7, 1, 2
    raw = torch.zeros(2, A * (5 + n), H, W)                  # one anchor of 1 x 1 cells on a 1 x 2 grid
    # image 0, detection: a triangle centred at (.75, .5), w = .5, h = .5 -> cell (row 0, column 1)
    raw[0, 4, 0, 1] = math.log(3)                            # σ(to) = .75 there; σ = .5 elsewhere
    # image 1, classification ("ellipse", no box): column 0 has σ(to) = .5 and Pr(ellipse) = .5·.5 = .25
    # (score .125); column 1 has σ(to) = .2 and Pr(round) = 9/10, Pr(ellipse | round) = 9/10 (score .2·.81 = .162)
    raw[1, 4, 0, 1] = -math.log(4)
    raw[1, 5 + 0, 0, 1] = math.log(9)
    raw[1, 5 + 3, 0, 1] = math.log(9)
    raw.requires_grad_()
    targets = [{"boxes": torch.tensor([[0.5, 0.25, 1.0, 0.75]]), "labels": torch.tensor([4])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "image_label": torch.tensor(3)}]
    t = yolo9000.joint_loss(raw, targets, torch.tensor([[1.0, 1.0]]), seen=100_000, tree=tree)
    N = 2                                                    # every term is a mean over the 2 images
    # detection: the anchor box at column 1 is [.5, 0, 1, 1] (w = 1 cell = .5, h = 1): IoU with the truth .25/.5 = .5
    # xy: targets .75·2 - 1 = .5 and .5 = σ(0): 0. wh: tw target log(.5·2/1) = 0, th target log(.5):
    #   ½·(2 - w·h)·ln²2 with w·h = .25
    assert t["xy"].item() == pytest.approx(0, abs=1e-7)
    assert t["wh"].item() == pytest.approx(0.5 * 1.75 * math.log(0.5) ** 2 / N)
    assert t["obj"].item() == pytest.approx(0.5 * 5 * (0.5 - 0.75) ** 2 / N)       # rescore: target IoU .5
    assert t["noobj"].item() == pytest.approx(0.5 * 1 * 0.5 ** 2 / N)               # column 0: IoU 0, σ = .5
    assert t["cls"].item() == pytest.approx(math.log(6) / N)       # -log(Pr(polygon)·Pr(triangle | polygon)) = ln 2·3
    assert t["prior"].item() == 0                                  # seen > 12800
    # classification: column 1 wins (.162 > .125) although its objectness is lower
    assert t["cls_image"].item() == pytest.approx(-math.log(0.81) / N, rel=1e-5)
    assert t["obj_image"].item() == pytest.approx(0.5 * 5 * (0.3 - 0.2) ** 2 / N)  # pulled up to .3
    assert t["total"].item() == pytest.approx(sum(v.item() for k, v in t.items() if k != "total"))
    t["total"].backward()
    assert raw.grad[1, :, 0, 0].abs().max().item() == 0           # nothing at the classification image's other box
    assert raw.grad[1, :4].abs().max().item() == 0                 # and no box error at all


# -----------------------------------------------------------------------------
# The yolo9000 network: layers, output, file size

def test_yolo9000_shapes_and_file_size():
    tree = dict(ids=[f"n{k:08d}" for k in range(9418)], parents=[-1] * 9418)    # any 9418-node tree
    with torch.device("meta"):
        model = yolo9000.build("yolo9000", tree=tree)
    # (N, A·(5 + n), 544/32, 544/32) = (N, 28269, 17, 17); the forward itself is run on the demo's net below
    assert (model.detect.conv.out_channels, model.stride, model.img_size) == (3 * (9418 + 5), 32, 544)
    convs = [(3, 32, 3), (32, 64, 3), (64, 128, 3), (128, 64, 1), (64, 128, 3), (128, 256, 3), (256, 128, 1),
             (128, 256, 3), (256, 512, 3), (512, 256, 1), (256, 512, 3), (512, 256, 1), (256, 512, 3),
             (512, 1024, 3), (1024, 512, 1), (512, 1024, 3), (1024, 512, 1), (512, 1024, 3)]   # Darknet-19, Table 6
    # each conv with batch norm: 4 x c_out (biases, scales, mean, variance) + c_in·c_out·k² weights
    trunk = sum(4 * c_out + c_in * c_out * k * k for c_in, c_out, k in convs)
    head = 28_269 + 1024 * 28_269                                  # biases + 1x1 weights, no batch norm
    assert 16 + 4 * (trunk + head) == 195_230_020 == yolo9000.PRESETS["yolo9000"]["weights_bytes"]
    assert darknet.darknet_file_bytes(model, version=(0, 1, 0)) == 195_230_020
    assert len(darknet.darknet_layers(model)) == 19
    with pytest.raises(ValueError, match="needs its WordTree"):
        yolo9000.build("yolo9000")


def test_postprocess_lists_the_descents_node_with_the_objectness():
    tree = wordtree.make_tree(yolo9000.SHAPE_TREE["parents"], yolo9000.SHAPE_TREE["ids"])
    raw = torch.full((1, 12, 1, 1), -10.0)                   # A = 1, n = 7, one cell; objectness σ(-10) ≈ 0
    raw[0, :4] = 0                                           # box: centre (.5, .5), anchor 1 x 1 -> the whole image
    raw[0, 4] = math.log(4)                                  # σ = .8
    raw[0, 5 + 1] = math.log(9)                              # Pr(polygon) = 9 / (9 + e^-10·...) ≈ .99995
    raw[0, 5 + 5] = math.log(2)                              # Pr(rectangle | polygon) = 2 / (2 + 2e^-10) ≈ 1
    (found,) = yolo9000.postprocess(raw, torch.tensor([[1.0, 1.0]]), tree, [(200, 100)], 0.5, 1.0, stride=32)
    assert found["labels"].tolist() == [5] and found["scores"].tolist() == pytest.approx([0.8])
    assert found["boxes"][0].tolist() == pytest.approx([0, 0, 200, 100])
    # map path: objectness · Pr(node) for the nodes asked, circle and rectangle
    (mapped,) = yolo9000.postprocess(raw, torch.tensor([[1.0, 1.0]]), tree, [(200, 100)], 0.5, 1.0, nodes=[2, 5])
    assert mapped["labels"].tolist() == [1] and mapped["scores"].item() == pytest.approx(0.8, rel=1e-3)


# -----------------------------------------------------------------------------
# Datasets

def test_joint_dataset_mixes_at_the_share_and_maps_labels(tmp_path):
    train, val = yolo9000.shapes_datasets(8, 4, 64, seed=0, share=0.5)
    kinds = ["image_label" in train[i][1] for i in range(6)]
    assert kinds == [False, True] * 3                                   # floor((i+1)/2) > floor(i/2) at odd i
    image, target = train[1]
    assert image.shape == (3, 64, 64) and target["boxes"].shape == (0, 4)
    assert int(target["image_label"]) in (3, 6)                         # ellipse or pentagon, tree indices
    assert set(train[0][1]["labels"].tolist()) <= {2, 4, 5}             # circle, triangle, rectangle
    assert val.nodes == [2, 4, 5, 3, 6] and val.without_boxes == ["ellipse", "pentagon"]
    # darknet's map files and WordNet-id folders
    tree = wordtree.make_tree([-1, -1, 0], ["n001", "n002", "n003"])
    (tmp_path / "coco9k.map").write_text("2\n0\n")
    assert wordtree.read_map(str(tmp_path / "coco9k.map"), tree) == [2, 0]
    (tmp_path / "bad.map").write_text("7\n")
    with pytest.raises(ValueError, match="bad.map:1: index 7 outside"):
        wordtree.read_map(str(tmp_path / "bad.map"), tree)
    assert wordtree.node_of(tree, ["n003", "n001"]) == [2, 0]
    for wnid in ("n003", "n002"):
        os.makedirs(tmp_path / "inet" / wnid)
        yolo9000.ShapeTreeDataset(1, 32, 0, ["circle"]).load(0).save(tmp_path / "inet" / wnid / "a.png")
    folder = yolo9000.ClassificationFolder(str(tmp_path / "inet"), 64)
    assert folder.class_names == ["n002", "n003"] and wordtree.node_of(tree, folder.class_names) == [1, 2]
    assert folder[1][0].shape == (3, 64, 64) and folder[1][1]["labels"].tolist() == [1]


# -----------------------------------------------------------------------------
# detect.py with a darknet file of the demo's layout, its tree given with --tree

def test_detect_tree_hier_and_show_tree(tmp_path, capsys):
    torch.manual_seed(0)
    model = yolo9000.build("yolo9000-shapes")
    with torch.no_grad():
        model.detect.conv.bias.view(3, 12)[:, 4] = 5.0       # every objectness ≈ σ(5) = .993: every box listed
    darknet.save_darknet_weights(model, tmp_path / "w.weights")
    tree = write_tree(tmp_path / "shapes.tree", list(zip(yolo9000.SHAPE_TREE["ids"], yolo9000.SHAPE_TREE["parents"])))
    (tmp_path / "shapes.names").write_text("\n".join(yolo9000.SHAPE_TREE["ids"]) + "\n")
    yolo9000.ShapeTreeDataset(1, 112, 0, ["circle"]).load(0).save(tmp_path / "image.png")
    args = detect.get_args_parser().parse_args(
        ["--model", "yolo9000-shapes", "--weights", str(tmp_path / "w.weights"), "--tree", tree, "--names",
         str(tmp_path / "shapes.names"), "--hier", "0.0", "--conf", "0.5", "--nms", "1.0", "--show-tree",
         "--out", str(tmp_path / "out"), "--save-json", str(tmp_path / "d.json"), str(tmp_path / "image.png")])
    result = detect.main(args)
    records = result["detections"]
    assert len(records) == 3 * 7 * 7                          # one entry per box (A·H·W), objectness > .5
    assert all(r["label"] >= 2 and r["class"] == yolo9000.SHAPE_TREE["ids"][r["label"]] for r in records)  # leaves
    assert all(0 <= r["bbox"][0] and r["bbox"][0] + r["bbox"][2] <= 112 for r in records)
    assert "Pr(node | parent)" in capsys.readouterr().out
