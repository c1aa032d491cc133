"""Tests of wordtree.py and yolo9000.py (its joint data too): the tree file, the grouped softmax, the path probabilities
and the descent on the paper's Figure 5 example, the joint loss by hand on one detection and one classification image
(the paper's rule and darknet's), the yolo9000 network's shapes and file size by arithmetic, the datasets, detect.py's
YOLO9000 options; §4 on test-written data: a COCO json, WordNet-id folders, a tree and maps, ILSVRC-style XML, the
ImageNet DET protocol (by hand and against the devkit's loops), the disjoint classes of a hand-built pair of maps,
WordTree classification on the shapes tree, and the three command lines end to end."""
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
# Pr(node | parent) along Norfolk terrier's path and for its siblings (each group sums to 1). Figure 5 prints no
# probabilities: these numbers are ours, chosen so that the two descent rules stop at different nodes.
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


# -----------------------------------------------------------------------------
# Darknet's rules for a classification image's objectness, beside the paper's

def test_joint_loss_darknets_classification_rules():
    tree = wordtree.make_tree(yolo9000.SHAPE_TREE["parents"], yolo9000.SHAPE_TREE["ids"])
    raw = torch.zeros(1, 12, 1, 2)                           # A = 1, n = 7, a 1 x 2 grid: 2 predictions
    # column 0: σ(to) = .5, Pr(ellipse) = .25 (score .125); column 1: σ(to) = .2, Pr(ellipse) = .81 (score .162)
    raw[0, 4, 0, 1] = -math.log(4)
    raw[0, 5 + 0, 0, 1] = math.log(9)
    raw[0, 5 + 3, 0, 1] = math.log(9)
    raw.requires_grad_()
    target = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "image_label": torch.tensor(3)}]
    anchors = torch.tensor([[1.0, 1.0]])
    paper, darknet, january = (yolo9000.joint_loss(raw, target, anchors, 100_000, tree, classification_rule=rule)
                               for rule in ("paper", "darknet", "darknet-2017-01"))
    # the same chosen box and class error under every rule: column 1, -log .81
    for t in (paper, darknet, january):
        assert t["cls_image"].item() == pytest.approx(-math.log(0.81), rel=1e-5)
    # paper: the .3 pull only; darknet (2f212a47 on): the no-object error at column 0, nothing at column 1;
    # darknet-2017-01 (d2dece3, yolo9000.weights' release): both
    assert paper["obj_image"].item() == pytest.approx(0.5 * 5 * (0.3 - 0.2) ** 2) and paper["noobj_image"].item() == 0
    assert darknet["obj_image"].item() == 0 and darknet["noobj_image"].item() == pytest.approx(0.5 * 1 * 0.5 ** 2)
    assert january["obj_image"].item() == pytest.approx(0.5 * 5 * 0.1 ** 2)
    assert january["noobj_image"].item() == pytest.approx(0.5 * 0.5 ** 2)
    darknet["total"].backward()
    # d/dto ½σ² = σ·σ(1 - σ) = .5·.25 at column 0; column 1's objectness gets nothing
    assert raw.grad[0, 4, 0, 0].item() == pytest.approx(0.5 * 0.25) and raw.grad[0, 4, 0, 1].item() == 0
    with pytest.raises(ValueError, match="classification_rule must be one of"):
        yolo9000.joint_loss(raw, target, anchors, 0, tree, classification_rule="yolo")


# -----------------------------------------------------------------------------
# WordTree1k-style cuts of a tree, and the classes that never saw a box

def test_subtree_keeps_the_paths_in_file_order(figure5):
    tree, old = wordtree.subtree(figure5, [11, 6])          # Norfolk terrier and cat
    # paths 0-1-3-5-7-9-11 and 0-1-3-6 -> nodes 0 1 3 5 6 7 9 11, renumbered 0..7
    assert old == [0, 1, 3, 5, 6, 7, 9, 11]
    assert tree["parent"].tolist() == [-1, 0, 1, 2, 2, 3, 5, 6]
    assert tree["ids"][7] == "Norfolk_terrier" and tree["leaf"].nonzero().flatten().tolist() == [4, 7]


def test_disjoint_classes_on_a_hand_built_pair_of_maps(figure5, tmp_path):
    # COCO-like map: hunting dog (7), artifact (2); ImageNet-like: mammal, dog, cat, Norfolk terrier, artifact, bird
    (tmp_path / "coco.map").write_text("7\n2\n")
    (tmp_path / "inet.map").write_text("3\n5\n6\n11\n2\n4\n")
    coco, inet = (wordtree.read_map(str(tmp_path / f), figure5) for f in ("coco.map", "inet.map"))
    # a hunting-dog box trains physical object, animal, mammal, dog, hunting dog (its path); artifact its own.
    # Left: cat (class 2), Norfolk terrier (3: below hunting dog, no box of its own), bird (5) -> 3 of 6
    assert wordtree.disjoint(inet, coco, figure5) == [2, 3, 5]


# -----------------------------------------------------------------------------
# The ImageNet detection protocol (the ILSVRC2015 devkit's), by hand

def test_ilsvrc_protocol_small_objects_unmatched_truths_and_the_blacklist():
    import metrics
    truths = [{"boxes": torch.tensor([[0., 0, 99, 99], [0, 0, 9, 9], [30, 30, 59, 59]]),
               "labels": torch.tensor([0, 0, 1]), "blacklisted": torch.tensor([1])},    # class 1 not scored in image 0
              {"boxes": torch.tensor([[0., 0, 99, 99], [50, 0, 149, 99]]), "labels": torch.tensor([0, 0])}]
    detections = [{"boxes": torch.tensor([[0., 0, 19, 19], [0, 0, 99, 99], [0, 0, 99, 99], [30, 30, 59, 59]]),
                   "scores": torch.tensor([0.9, 0.8, 0.7, 0.95]), "labels": torch.tensor([0, 0, 0, 1])},
                  {"boxes": torch.tensor([[0., 0, 99, 99], [20, 0, 119, 99]]), "scores": torch.tensor([0.85, 0.6]),
                   "labels": torch.tensor([0, 0])}]
    r = metrics.evaluate(detections, truths, protocol="ilsvrc", num_classes=2)
    # image 0: [0,0,19,19] on the 10 x 10 object: IoU 100 / 400 = .25 >= min(.5, 100 / (20·20)) = .25: a TP (VOC: no);
    #   [0,0,99,99] TP, its duplicate FP. image 1: [0,0,99,99] takes the first object; [20,0,119,99] overlaps it
    #   most (8000 / 12000) but it is taken: the second, 7000 / 13000 = .54 >= .5, is a TP (VOC: a FP)
    # by score: .9 TP, .85 TP, .8 TP, .7 FP, .6 TP; 4 objects -> recall .25 .5 .75 .75 1, precision 1 1 1 .75 .8
    # VOCap: .75·1 + .25·max(.75, .8)
    assert r["ap"][0] == pytest.approx(0.75 + 0.25 * 0.8)
    assert math.isnan(r["ap"][1]) and r["num_gt"] == {0: 4, 1: 0}    # blacklisted: neither counted nor scored
    assert r["map"] == pytest.approx(0.95)
    voc = metrics.evaluate(detections, truths, protocol="voc12", num_classes=2)
    assert voc["ap"][0] < r["ap"][0]


def write_ilsvrc(root, images, listed=True):
    """images: {image id: ((w, h), [(WordNet id, xmin, ymin, xmax, ymax)])} -> root/ILSVRC/..., laid out as ImageNet
    ships DET val."""
    from conftest import save_jpeg
    base = root / "ILSVRC"
    os.makedirs(base / "Annotations" / "DET" / "val")
    os.makedirs(base / "ImageSets" / "DET")
    for image_id, (size, objects) in images.items():
        save_jpeg(str(base / "Data" / "DET" / "val" / f"{image_id}.JPEG"), size)
        body = "".join(f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
                       f"<ymax>{d}</ymax></bndbox></object>\n" for n, a, b, c, d in objects)
        (base / "Annotations" / "DET" / "val" / f"{image_id}.xml").write_text(
            f"<annotation>\n<folder>ILSVRC2013_val</folder>\n<filename>{image_id}</filename>\n<size><width>{size[0]}"
            f"</width><height>{size[1]}</height></size>\n{body}</annotation>\n")
    if listed:
        (base / "ImageSets" / "DET" / "val.txt").write_text("".join(f"{i} {k}\n" for k, i in enumerate(images, 1)))
    return str(root)


def test_imagenet_detection_reads_ilsvrc_val_and_its_blacklist(tmp_path):
    root = write_ilsvrc(tmp_path, {
        "ILSVRC2012_val_00000001": ((40, 30), [("n003", 0, 2, 19, 29), ("n009", 1, 1, 5, 5)]),
        "ILSVRC2012_val_00000002": ((40, 30), [])})
    (tmp_path / "blacklist.txt").write_text("2 n001\n")
    dataset = yolo9000.ImageNetDetection(root, ["n001", "n003"], img_size=64, blacklist=str(tmp_path / "blacklist.txt"))
    assert len(dataset) == 2 and dataset.class_names == ["n001", "n003"]
    first = dataset.annotation(0)
    assert first["boxes"].tolist() == [[0, 2, 19, 29]] and first["labels"].tolist() == [1]   # the XML's numbers
    assert dataset.problems[0].endswith("unknown class name 'n009', object dropped")
    assert dataset.annotation(1)["blacklisted"].tolist() == [0]
    assert dataset[0][0].shape == (3, 64, 64)
    with pytest.raises(FileNotFoundError, match="no ILSVRC/Annotations/DET/test"):
        yolo9000.ImageNetDetection(root, ["n001"], split="test")
    (tmp_path / "bad.txt").write_text("1 n777\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: expected '<image index> <WordNet id"):
        yolo9000.ImageNetDetection(root, ["n001"], blacklist=str(tmp_path / "bad.txt"))


def test_imagenet_report_means_and_table7_order():
    result = {"ap": {0: 0.5, 1: 0.1, 2: float("nan"), 3: 0.3}}
    text, overall, disjoint = yolo9000.imagenet_report(result, ["a", "b", "c", "d"], [1, 2, 3], shown=1)
    assert overall == pytest.approx((0.5 + 0.1 + 0.3) / 3) and disjoint == pytest.approx((0.1 + 0.3) / 2)
    lines = text.splitlines()
    assert lines[0] == "mAP on 3 classes: 30.0"
    assert lines[1].startswith("mAP on the 2 classes that share no node with COCO") and lines[1].endswith(": 20.0")
    assert lines[3].split() == ["b", "10.0"] and lines[5].split() == ["d", "30.0"]      # lowest, then highest
    assert [line.split()[0] for line in lines[7:]] == ["a", "d", "b"]


# -----------------------------------------------------------------------------
# §4's data on test-sized files: a COCO json, ImageNet-style WordNet-id folders, a tree and a map

# SHAPE_TREE with WordNet-style ids: round, polygon | circle, ellipse | triangle, rectangle, pentagon
WNIDS = [f"n{k:08d}" for k in range(1, 8)]


def write_joint_data(root):
    """-> (COCO folder, ImageNet folder, tree file, COCO map): 3 COCO images of circles, triangles and rectangles
    (category ids 1, 2, 5: not 0..K-1), 2 ImageNet folders (ellipse, pentagon) of 2 single-shape images each."""
    import json
    tree = write_tree(root / "shapes.tree", list(zip(WNIDS, yolo9000.SHAPE_TREE["parents"])))
    (root / "coco.map").write_text("2\n4\n5\n")        # category ids 1, 2, 5 in order: circle, triangle, rectangle
    shapes = yolo9000.ShapeTreeDataset(3, 64, 0, ["circle", "triangle", "rectangle"])
    os.makedirs(root / "coco" / "annotations")
    os.makedirs(root / "coco" / "train")
    images, annotations = [], []
    for i in range(3):
        shapes.load(i).save(root / "coco" / "train" / f"{i}.jpg")
        images.append({"id": 10 + i, "file_name": f"{i}.jpg", "width": 64, "height": 64})
        for (x0, y0, x1, y1), label, _, _ in shapes._layout(i)[1]:
            annotations.append({"id": len(annotations) + 1, "image_id": 10 + i, "category_id": [1, 2, 5][label],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    categories = [{"id": c, "name": n} for c, n in ((1, "circle"), (2, "triangle"), (5, "rectangle"))]
    (root / "coco" / "annotations" / "instances_train.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    for wnid, name in ((WNIDS[3], "ellipse"), (WNIDS[6], "pentagon")):
        os.makedirs(root / "imagenet" / wnid)
        for i in range(2):
            yolo9000.ShapeTreeDataset(2, 48, 7, [name], single=True).load(i).save(root / "imagenet" / wnid / f"{i}.png")
    return str(root / "coco"), str(root / "imagenet"), tree, str(root / "coco.map")


def test_coco_imagenet_maps_both_into_the_tree_at_four_to_one(tmp_path):
    coco, imagenet, tree, coco_map = write_joint_data(tmp_path)
    train, val = yolo9000.coco_imagenet(coco, imagenet, tree, coco_map, img_size=64, augment=None)
    assert len(train) == 5                                   # ceil(4 ImageNet images / .8): one pass over ImageNet
    kinds = ["image_label" in train[i][1] for i in range(5)]
    assert kinds == [False, True, True, True, True]          # floor((i + 1)·.8) > floor(i·.8) but at i = 0
    assert [int(train[i][1]["image_label"]) for i in range(1, 5)] == [3, 3, 6, 6]   # ellipse, pentagon: tree nodes
    assert set(train[0][1]["labels"].tolist()) <= {2, 4, 5}   # COCO's labels 0, 1, 2 through the map
    assert val.nodes == [2, 4, 5] and len(val) == 3 and train.tree["ids"] == WNIDS
    (tmp_path / "short.map").write_text("2\n4\n")
    with pytest.raises(ValueError, match=r"short.map: 2 nodes for the 3 classes"):
        yolo9000.coco_imagenet(coco, imagenet, tree, str(tmp_path / "short.map"))
    os.makedirs(tmp_path / "imagenet" / "n99999999")
    yolo9000.ShapeTreeDataset(1, 32, 0, ["circle"]).load(0).save(tmp_path / "imagenet" / "n99999999" / "a.png")
    with pytest.raises(ValueError, match=r"1 classes are not nodes of the tree: n99999999"):
        yolo9000.coco_imagenet(coco, imagenet, tree, coco_map)


# -----------------------------------------------------------------------------
# WordTree classification (tools/classify.py --tree): the synthetic shapes tree

def write_shape_folders(root, names=("circle", "ellipse", "triangle"), per_class=2, size=32):
    """ImageNet-style folders named by the WordNet-style ids of WNIDS, one shape per image."""
    for name in names:
        wnid = WNIDS[yolo9000.SHAPE_TREE["ids"].index(name)]
        os.makedirs(root / wnid)
        for i in range(per_class):
            yolo9000.ShapeTreeDataset(per_class, size, 3, [name], single=True).load(i).save(root / wnid / f"{i}.png")
    return str(root)


class FixedLogits(torch.nn.Module):
    """A stand-in network that answers the same logits, in order, whatever the images."""

    def __init__(self, logits, tree, leaves):
        super().__init__()
        self.logits, self.tree, self.leaves, self.weight = logits, tree, leaves, torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.logits[: len(x)]


def test_wordtree_classification_labels_loss_and_graceful_descent(tmp_path):
    from tools import classify
    tree_file = write_tree(tmp_path / "shapes.tree", list(zip(WNIDS, yolo9000.SHAPE_TREE["parents"])))
    folder = write_shape_folders(tmp_path / "folder")
    train, val = classify.datasets(folder, 32, None, tree_file)
    # circle, ellipse, triangle and their ancestors: round (0), polygon (1), circle (2), ellipse (3), triangle (4);
    # rectangle and pentagon are cut
    assert train.class_names == WNIDS[:5] and train.tree["parents"] == [-1, -1, 0, 0, 1]
    assert train.tree["leaves"] == [2, 3, 4]
    assert [label for _, label in train.items] == [2, 2, 3, 3, 4, 4]
    tree = wordtree.make_tree(train.tree["parents"], train.tree["ids"])
    model = classify.build("darknet19", num_classes=5, tree=train.tree)
    assert model.config["tree"] == train.tree
    logits = torch.zeros(6, 5)
    logits[:, 0] = math.log(3)           # Pr(round) = 3/4, Pr(polygon) = 1/4
    logits[:, 2] = math.log(1.5)         # Pr(circle | round) = 3/5, Pr(ellipse | round) = 2/5
    targets = [{"label": torch.tensor(label)} for _, label in train.items]
    # -log Pr(label): circle -log(3/4 · 3/5), ellipse -log(3/4 · 2/5), triangle -log(1/4 · 1) (a group of one)
    expected = (2 * -math.log(0.45) + 2 * -math.log(0.3) + 2 * -math.log(0.25)) / 6
    assert classify.loss(model, logits, targets, 0)["total"].item() == pytest.approx(expected)
    # evaluation: every image sees Pr = circle .45, ellipse .3, triangle .25, round .75, polygon .25
    result = classify.evaluate(FixedLogits(logits, tree, model.leaves), val, batch_size=6)
    assert result["top1"] == pytest.approx(2 / 6)           # circle first: right for the 2 circles
    assert result["top5"] == 1.0
    # the descent at .5: round .75 passes, circle .45 does not: stops at round, an ancestor of circle and ellipse
    assert (result["descent_exact"], result["descent_ancestor"], result["descent_wrong"]) == \
        pytest.approx((0.0, 4 / 6, 2 / 6))


def devkit_ilsvrc_ap(detections, truths, K):
    """The devkit's evaluation written out loop by loop (per image: detections in decreasing score, each takes the
    unmatched object of its class with the highest IoU >= its threshold; then VOCap per class)."""
    import numpy as np
    from metrics import average_precision
    tp_all, conf_all, label_all, npos = [], [], [], np.zeros(K)
    for det, gt in zip(detections, truths):
        boxes, labels = gt["boxes"].numpy(), gt["labels"].numpy()
        w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        thr = np.minimum(0.5, w * h / ((w + 10) * (h + 10)))
        done = np.zeros(len(labels), bool)
        for c in labels:
            npos[c] += 1
        for j in np.argsort(-det["scores"].numpy(), kind="stable"):
            bb, ovmax, kmax = det["boxes"][j].numpy(), -np.inf, -1
            for k in range(len(labels)):
                if labels[k] != det["labels"][j] or done[k]:
                    continue
                g = boxes[k]
                iw, ih = min(bb[2], g[2]) - max(bb[0], g[0]) + 1, min(bb[3], g[3]) - max(bb[1], g[1]) + 1
                if iw > 0 and ih > 0:
                    ov = iw * ih / ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + w[k] * h[k] - iw * ih)
                    if ov >= thr[k] and ov > ovmax:
                        ovmax, kmax = ov, k
            if kmax >= 0:
                done[kmax] = True
            tp_all.append(float(kmax >= 0))
            conf_all.append(float(det["scores"][j]))
            label_all.append(int(det["labels"][j]))
    order = np.argsort(-np.array(conf_all), kind="stable")
    tp_all, label_all = np.array(tp_all)[order], np.array(label_all)[order]
    ap = {}
    for c in range(K):
        if npos[c]:
            tp = np.cumsum(tp_all[label_all == c])
            fp = np.cumsum(1 - tp_all[label_all == c])
            ap[c] = average_precision(tp / npos[c], tp / (tp + fp), "voc12")
    return ap


def test_ilsvrc_protocol_equals_the_devkit_loops_on_random_boxes():
    import metrics
    g = torch.Generator().manual_seed(0)
    detections, truths = [], []
    for _ in range(30):                                      # 30 images, 3 classes, objects of 4 to 60 pixels
        m, n = int(torch.randint(1, 5, (1,), generator=g)), int(torch.randint(0, 25, (1,), generator=g))
        corner = torch.rand(m, 2, generator=g) * 60
        gt = torch.cat([corner, corner + 4 + torch.rand(m, 2, generator=g) * 56], 1).round()
        labels = torch.randint(0, 3, (m,), generator=g)
        pick = torch.randint(0, m, (n,), generator=g)
        boxes = gt[pick] + torch.randn(n, 4, generator=g) * 4      # near the objects, so that matching is contested
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        scores = (torch.rand(n, generator=g) * 10).round() / 10    # ties in score too
        detections.append({"boxes": boxes, "scores": scores, "labels": torch.where(torch.rand(n, generator=g) < .8,
                                                                                   labels[pick], 2)})
        truths.append({"boxes": gt, "labels": labels})
    ours, loops = metrics.evaluate(detections, truths, protocol="ilsvrc", num_classes=3)["ap"], \
        devkit_ilsvrc_ap(detections, truths, 3)
    assert set(loops) == {0, 1, 2}
    assert [ours[c] for c in range(3)] == pytest.approx([loops[c] for c in range(3)], abs=1e-12)


# -----------------------------------------------------------------------------
# The three command lines, end to end on test-written data

def test_train_yolo9000_on_coco_and_imagenet_folders(tmp_path, capsys):
    import train
    coco, imagenet, tree, coco_map = write_joint_data(tmp_path)
    result = train.main(train.get_args_parser().parse_args(
        ["--model", "yolo9000-shapes", "--data", coco, "--imagenet", imagenet, "--tree", tree, "--coco-map", coco_map,
         "--classification-loss", "darknet", "--img-size", "64", "--epochs", "1", "--batch-size", "5",
         "--workers", "0", "--no-plots", "--out", str(tmp_path / "run")]))
    out = capsys.readouterr().out
    assert "7 classes, 5 training images, 1 steps of 5" in out            # 4 ImageNet images at 4:1: 5 in all
    assert "noobj_image" in out and "mAP@0.5 on all classes:" in out      # darknet's rule; COCO through the tree
    assert 0.0 <= result["best"] <= 1.0
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["model_config"]["tree"]["ids"] == WNIDS
    assert checkpoint["config"]["classification_loss"] == "darknet"


def test_train_yolo9000_names_what_is_missing(tmp_path):
    import train
    coco, _, tree, _ = write_joint_data(tmp_path)
    with pytest.raises(SystemExit, match=r"missing: --imagenet \(folder of WordNet-id folders\), --coco-map"):
        train.main(train.get_args_parser().parse_args(
            ["--model", "yolo9000-shapes", "--data", coco, "--tree", tree, "--out", str(tmp_path / "run")]))


def test_detect_imagenet_evaluation_by_hand(tmp_path, capsys):
    # a network that answers the same for every image: one cell (16 px input, stride 16), every anchor's box the whole
    # image (tw = log(1 / anchor width), th likewise), objectness σ(0) = .5, all class logits 0
    model = yolo9000.build("yolo9000-shapes", img_size=16)
    with torch.no_grad():
        model.detect.conv.weight.zero_()
        bias = model.detect.conv.bias.view(3, 12).zero_()
        bias[:, 2:4] = -model.anchors.log()
    darknet.save_darknet_weights(model, tmp_path / "w.weights")
    tree = write_tree(tmp_path / "shapes.tree", list(zip(WNIDS, yolo9000.SHAPE_TREE["parents"])))
    (tmp_path / "inet.map").write_text("2\n3\n6\n")         # circle, ellipse, pentagon
    (tmp_path / "coco.map").write_text("2\n4\n5\n")         # circle, triangle, rectangle
    root = write_ilsvrc(tmp_path, {"ILSVRC2012_val_00000001": ((40, 30), [(WNIDS[2], 0, 0, 39, 29)]),   # a circle
                                   "ILSVRC2012_val_00000002": ((40, 30), [(WNIDS[3], 0, 0, 39, 29)])})  # an ellipse
    result = detect.main(detect.get_args_parser().parse_args(
        ["--model", "yolo9000-shapes", "--weights", str(tmp_path / "w.weights"), "--tree", tree, "--img-size", "16",
         "--data", root, "--split", "val", "--inet-map", str(tmp_path / "inet.map"), "--coco-map",
         str(tmp_path / "coco.map"), "--precision", "fp32"]))
    # each image: one box per class after NMS, [0, 0, 40, 30], IoU with the object 40·30 / (41·31) = .944; scores
    # .5·Pr(node), equal in both images (ties in image order). circle: TP then FP -> AP 1; ellipse: FP then TP ->
    # precision 0, 1/2 at recall 0, 1 -> AP .5; pentagon: no object, not scored. Disjoint from COCO: ellipse, pentagon
    assert result["results"]["ilsvrc"]["ap"][0] == pytest.approx(1.0)
    assert result["results"]["ilsvrc"]["ap"][1] == pytest.approx(0.5)
    out = capsys.readouterr().out
    assert "mAP on 2 classes: 75.0" in out
    assert "mAP on the 1 classes that share no node with COCO (never a labelled box): 50.0" in out
    assert "of 3 classes share no node with COCO" in out


def test_train_wordtree_classifier_on_the_shapes_tree(tmp_path, capsys):
    import train
    tree = write_tree(tmp_path / "shapes.tree", list(zip(WNIDS, yolo9000.SHAPE_TREE["parents"])))
    folder = write_shape_folders(tmp_path / "folder", per_class=1)
    result = train.main(train.get_args_parser().parse_args(
        ["--task", "classify", "--model", "darknet19", "--tree", tree, "--data", folder, "--img-size", "32",
         "--epochs", "1", "--batch-size", "3", "--lr", "1e-3", "--workers", "0", "--no-plots",
         "--out", str(tmp_path / "run")]))
    out = capsys.readouterr().out
    assert "5 classes, 3 training images" in out             # circle, ellipse, triangle + round, polygon
    assert "stops at the label" in out and "above it on its path" in out
    r = result["result"]
    assert r["top5"] == 1.0 and r["descent_exact"] + r["descent_ancestor"] + r["descent_wrong"] == pytest.approx(1)


def test_classification_images_are_augmented_as_detection_images(tmp_path):
    _, imagenet, _, _ = write_joint_data(tmp_path)
    plain = yolo9000.ClassificationFolder(imagenet, 48)
    augmented = yolo9000.ClassificationFolder(imagenet, 48, augment="yolo9000", seed=3)
    image, target = augmented[1]
    assert image.shape == (3, 48, 48) and target["labels"].tolist() == [0] and target["boxes"].shape == (0, 4)
    assert not torch.equal(image, plain[1][0])                         # cropped, maybe flipped, recoloured
    assert torch.equal(image, augmented[1][0])                         # a function of (seed, epoch, image)
    augmented.set_epoch(1)
    assert not torch.equal(image, augmented[1][0])
    with pytest.raises(ValueError, match="augment must be None or one of"):
        yolo9000.ClassificationFolder(imagenet, 48, augment="yolo")


def test_evaluation_in_parts_equals_the_whole(capsys):
    # each DDP process detects its part (every world-th image), rank 0 scores the union: the same mAP as one
    # process on every image (no rank evaluates alone while the others wait past NCCL's timeout)
    torch.manual_seed(0)
    _, val = yolo9000.shapes_datasets(4, 6, 64, seed=0, share=0.5)
    model = yolo9000.build("yolo9000-shapes", img_size=64)
    whole = yolo9000.evaluate(model, val, 4)
    parts = {**yolo9000.detect_images(model, val, 4, indices=range(0, 6, 2)),
             **yolo9000.detect_images(model, val, 4, indices=range(1, 6, 2))}
    assert sorted(parts) == list(range(6))
    assert yolo9000.score(parts, val)["map"] == whole["map"]
    assert "mAP@0.5 on classes without boxes" in capsys.readouterr().out
