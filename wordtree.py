"""
WordTree (YOLOv2 paper, arXiv:1612.08242, §4 "Hierarchical classification"): the labels of YOLO9000 as a tree of
WordNet concepts, a softmax per group of siblings, and the probability of a node as a product down its path.

Paper -> code
  §4 WordTree, darknet's 9k.tree (one line per node: WordNet id, parent index) ..... read_tree(), make_tree()
  §4 "we compute the softmax over all sysnsets that are the same concept" ......... tree_log_softmax(), tree_softmax()
  §4 Pr(Norfolk terrier) = Pr(Norfolk terrier | terrier) · Pr(terrier | hunting dog) · ... · Pr(animal | ...)
                                                         .......................... absolute_probabilities(), path()
  §4 Detection: "traverse the tree down, taking the highest confidence path at every split until we reach some
     threshold" ................................................................... descend()
  §4 Joint training: the class loss of a label is the softmax error of every group on its path .. path_nll()
  darknet coco9k.map (one tree index per COCO class), ImageNet WordNet-id folders .. read_map(), node_of()
  §4 "Performance degrades gracefully" / WordTree1k: a tree cut to a dataset's synsets and their ancestors .. subtree()
  §4 YOLO9000: "the disjoint 156 object classes that it has never seen any labelled detection data for" .. disjoint()

A tree is a plain dict of tensors (make_tree): n nodes in file order, G groups of siblings.
  parent (n,)  index of the parent, -1 for a root       group (n,)  the group a node belongs to
  child (n,)   the group of a node's children, -1 for a leaf   leaf (n,) bool   depth (n,)  0 for a root
  offset (G,), size (G,)  the first node and the number of nodes of each group   ids: the n WordNet ids
  levels: the number of nodes on the longest path (an int)   tree_on(tree, device): its tensors on a device
Darknet (tree.c read_tree, pjreddie/darknet d2dece3, Jan 2017; unchanged since) builds the same arrays. The
tree file must list a parent before its children and a parent's children next to each other, as 9k.tree does:
darknet would silently make two groups of one parent's children; we refuse such a file.
"""
import torch

# -----------------------------------------------------------------------------
# The tree: parents -> groups of siblings


def make_tree(parents, ids=None, where="tree"):
    """parents: the parent index of each node (-1: a root), in file order; ids: their WordNet ids (or names).
    -> the tree dict described above. Raises ValueError "where:line: ..." for a tree darknet would misread."""
    parents = [int(p) for p in parents]
    n = len(parents)
    if n == 0:
        raise ValueError(f"{where}: no nodes")
    group, offset, size, child, depth, done = [], [], [], [-1] * n, [0] * n, set()
    for k, p in enumerate(parents):
        if not -1 <= p < k:
            raise ValueError(f"{where}:{k + 1}: parent {p} of node {k} must be -1 or a node listed before it")
        if k == 0 or p != parents[k - 1]:        # a new group of siblings starts (tree.c: parent != last_parent)
            if p in done:
                raise ValueError(f"{where}:{k + 1}: the children of node {p} are not contiguous (darknet would "
                                 "make two softmax groups of them)")
            done.add(p)
            offset.append(k)
            size.append(0)
            if p >= 0:
                child[p] = len(offset) - 1
        size[-1] += 1
        group.append(len(offset) - 1)
        depth[k] = 0 if p < 0 else depth[p] + 1
    is_parent = set(parents)
    # on the CPU whatever the default device (models are sometimes built on "meta" to check their shapes)
    long = lambda v: torch.tensor(v, dtype=torch.long, device="cpu")         # noqa: E731
    return dict(parent=long(parents), group=long(group), child=long(child), depth=long(depth),
                leaf=torch.tensor([k not in is_parent for k in range(n)], device="cpu"),
                offset=long(offset), size=long(size), ids=list(ids) if ids is not None else [str(k) for k in range(n)],
                levels=max(depth) + 1)


def tree_on(tree, device):
    """The tree with its tensors on device, copied the first time and kept in the tree: a loss that copied them
    at every step would make the host wait for each copy."""
    copies = tree.setdefault("copies", {})
    if torch.device(device) not in copies:
        copies[torch.device(device)] = {k: v.to(device) if torch.is_tensor(v) else v for k, v in tree.items()
                                        if k != "copies"}
    return copies[torch.device(device)]


def read_tree(path):
    """Darknet's tree file (9k.tree): one line per node, "<WordNet id> <parent index>" (-1 for a root)."""
    ids, parents = [], []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                node_id, parent = fields
                parents.append(int(parent))
            except ValueError:
                raise ValueError(f"{path}:{line_number}: expected '<id> <parent index>', found {line.strip()!r}") \
                    from None
            ids.append(node_id)
    return make_tree(parents, ids, where=path)


def tree_config(tree):
    """What rebuilds the tree (model.config["tree"]; a checkpoint holds it): the ids and the parents."""
    return dict(ids=list(tree["ids"]), parents=tree["parent"].tolist())


def path(tree, node):
    """[root, ..., node]: the node's ancestors from the root down, then the node."""
    nodes = [int(node)]
    while tree["parent"][nodes[-1]] >= 0:
        nodes.append(int(tree["parent"][nodes[-1]]))
    return nodes[::-1]


# -----------------------------------------------------------------------------
# §4: one softmax per group of siblings, then products down the paths

def tree_log_softmax(logits, tree):
    """(..., n) logits -> (..., n) log Pr(node | parent): a log-softmax over each group of siblings.
    Darknet's GPU kernel (blas_kernels.cu softmax_tree, temperature 1) computes the same softmax group by group."""
    shape, n = logits.shape, logits.shape[-1]
    x = logits.reshape(-1, n)                                              # (M, n)
    index = tree["group"].to(x.device).expand_as(x)                        # (M, n) group of each column
    G = len(tree["offset"])
    with torch.no_grad():                      # the largest logit of each group: a constant shift, for stability
        largest = x.new_full((x.shape[0], G), float("-inf")).scatter_reduce(1, index, x, "amax")   # (M, G)
    shifted = x - largest.gather(1, index)                                 # (M, n), <= 0
    sums = x.new_zeros(x.shape[0], G).scatter_add(1, index, shifted.exp())  # (M, G) Σ exp over each group
    return (shifted - sums.log().gather(1, index)).reshape(shape)


def tree_softmax(logits, tree):
    """(..., n) logits -> (..., n) Pr(node | parent); each group of siblings sums to 1."""
    return tree_log_softmax(logits, tree).exp()


def absolute_probabilities(conditional, tree):
    """(..., n) Pr(node | parent) -> (..., n) Pr(node) = the product of the conditionals from the root down (§4).
    Darknet's hierarchy_predictions (tree.c) does the same in place, in file order: parents come first."""
    absolute = conditional.clone()
    parent, depth = tree["parent"].to(conditional.device), tree["depth"].to(conditional.device)
    for d in range(1, int(depth.max()) + 1):                    # one level at a time: its parents are final
        nodes = (depth == d).nonzero().flatten()
        absolute[..., nodes] = conditional[..., nodes] * absolute[..., parent[nodes]]
    return absolute


def path_nll(log_conditional, labels, tree):
    """(K, n) log Pr(node | parent), labels (K,) node indices -> (K,) -log Pr(label) = Σ over the label's path of
    -log Pr(node | parent): a cross-entropy in every group from the label up to the root, none below it.
    Its gradient is darknet's delta_region_class with a tree (region_layer.c): in each group on the path,
    softmax - 1 for the node on the path and softmax for its siblings."""
    parent = tree["parent"].to(labels.device)
    k = torch.arange(len(labels), device=labels.device)
    node, total = labels.clone(), log_conditional.new_zeros(len(labels))
    # As many steps as the deepest path has nodes, whatever the labels: asking the device whether any path is
    # still going would make the host wait at every step.
    for _ in range(tree["levels"]):
        on = node >= 0
        total = total - torch.where(on, log_conditional[k, node.clamp(min=0)], 0.0)
        node = torch.where(on, parent[node.clamp(min=0)], node)
    return total


# -----------------------------------------------------------------------------
# §4 Detection: the thresholded descent

def descend(absolute, tree, threshold, rule="darknet"):
    """(M, n) Pr(node) -> (M,) the predicted node of each row: from the root group down, take the most likely
    node of the group while its score stays above threshold (darknet's -hier, .5); stop at the last node taken.

    rule "paper": the score is Pr(node) itself, the probability of the path (our reading of §4's "until we
      reach some threshold").
    rule "darknet" (tree.c hierarchy_top_prediction, as of 1b001a7f, 2017-09-20, to today): the score is p·Pr(node),
      p the product of the Pr() of the nodes already taken. Since Pr() is already a product down the path
      (hierarchy_predictions ran first), each ancestor counts again at every level: at depth 3 the score is
      c1³·c2²·c3 for conditionals c1, c2, c3, so darknet stops higher in the tree than the paper's rule.
    Both: in the root group the best root is returned even below threshold (darknet from 1b001a7f; before it,
    d2dece3d to 1b001a7f~1, a root group below threshold returned parent[offset[0]] = -1, no node); ties go to the
    first node (darknet's strict >). detect.py uses "darknet" (to list what darknet lists)."""
    if rule not in ("darknet", "paper"):
        raise ValueError(f"rule must be 'darknet' or 'paper', got {rule!r}")
    M, n = absolute.shape
    device = absolute.device
    G, width = len(tree["offset"]), int(tree["size"].max())
    # members[g] = the nodes of group g, padded with n (a column of -1 appended below: never the max)
    slot = torch.arange(width)
    members = torch.where(slot < tree["size"][:, None], tree["offset"][:, None] + slot, n).to(device)  # (G, width)
    padded = torch.cat([absolute, absolute.new_full((M, 1), -1.0)], 1)                                 # (M, n + 1)
    parent, child, offset = (tree[k].to(device) for k in ("parent", "child", "offset"))
    group = torch.zeros(M, dtype=torch.long, device=device)
    p = absolute.new_ones(M)
    result = torch.full((M,), -1, dtype=torch.long, device=device)
    active = torch.ones(M, dtype=torch.bool, device=device)
    while bool(active.any()):
        rows = active.nonzero().flatten()
        candidates = members[group[rows]]                                   # (R, width)
        best, arg = padded[rows[:, None], candidates].max(1)                # first of equal maxima
        node = candidates.gather(1, arg[:, None]).squeeze(1)                # (R,)
        score = p[rows] * best if rule == "darknet" else best
        taken = score > threshold
        # not taken: the node whose children this group is (in the root group: the best root, darknet's rule)
        at_root = group[rows] == 0
        stop_at = torch.where(at_root, node, parent[offset[group[rows]]])
        result[rows] = torch.where(taken, node, stop_at)
        is_leaf = child[node] < 0
        p[rows] = torch.where(taken, p[rows] * best, p[rows])
        group[rows] = torch.where(taken & ~is_leaf, child[node], group[rows])
        active[rows] = taken & ~is_leaf
    return result


# -----------------------------------------------------------------------------
# Label maps: a dataset's classes -> nodes of the tree

def read_map(path, tree):
    """darknet's coco9k.map / inet9k.map: line k holds the tree index of the dataset's class k."""
    nodes = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            if line.strip():
                try:
                    node = int(line)
                except ValueError:
                    raise ValueError(f"{path}:{line_number}: expected a tree index, found {line.strip()!r}") from None
                if not 0 <= node < len(tree["ids"]):
                    raise ValueError(f"{path}:{line_number}: index {node} outside the tree's {len(tree['ids'])} "
                                     "nodes")
                nodes.append(node)
    return nodes


def node_of(tree, names):
    """[WordNet id (an ImageNet folder name such as n02094114)] -> [tree index]; an id not in the tree -> error."""
    index = {node_id: k for k, node_id in enumerate(tree["ids"])}
    missing = [name for name in names if name not in index]
    if missing:
        raise ValueError(f"{len(missing)} classes are not nodes of the tree: {', '.join(missing[:5])}")
    return [index[name] for name in names]


def subtree(tree, nodes):
    """The nodes given and all their ancestors, in file order -> (the tree dict of those nodes, old index of each new
    node). Kept nodes keep their order, so parents still come first and siblings stay together.
    §4 builds WordTree1k from WordNet: ImageNet's 1000 synsets and the nodes on their paths to the root, 1369 labels.
    WordNet is not a dependency here (no package this project may use ships its data), so the classifier reads a
    tree file in darknet's format and cuts it to its folders' synsets with this (OUR CHOICE). Cut from 9k.tree,
    ImageNet-1k's synsets give 1695 nodes, not 1369: 9k.tree's paths hold more intermediate synsets."""
    keep = set()
    for node in nodes:
        keep.update(path(tree, node))
    old = sorted(keep)
    new_index = {k: i for i, k in enumerate(old)}
    parents = [new_index[int(tree["parent"][k])] if tree["parent"][k] >= 0 else -1 for k in old]
    return make_tree(parents, [tree["ids"][k] for k in old]), old


def disjoint(nodes, seen_nodes, tree):
    """The classes (indices into nodes) that never had labelled detection data: their node is neither one of
    seen_nodes (COCO's classes through coco9k.map) nor an ancestor of one. A COCO box of class c trains the class
    error on c's whole path from the root (path_nll), so an ancestor of c does see detection data; a descendant of
    c does not (§4: "we do not assign any error to predictions further down the tree").
    With darknet's inet9k.map and coco9k.map this gives 161 of ImageNet's 200 detection classes (38 share COCO's
    node, one, racket, is an ancestor of COCO's tennis racket); the paper says 156."""
    seen = set()
    for node in seen_nodes:
        seen.update(path(tree, node))
    return [k for k, node in enumerate(nodes) if int(node) not in seen]
