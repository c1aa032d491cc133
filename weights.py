"""
Darknet's .weights files: reading them into the networks of darknet.py / yolov1.py / yolov2.py, and writing them.

Darknet -> code (github.com/pjreddie/darknet, src/parser.c)
  load_weights_upto: header, then each layer's floats in cfg order ............ load_darknet_weights()
  save_weights_upto: the inverse ................................................ save_darknet_weights()
  the layers that own floats, in cfg order ...................................... darknet_layers()
  load_convolutional_weights / load_connected_weights / the [local] branch ...... _tensors_in_file_order()
  the file size a network implies (checked exactly before anything is loaded) ... darknet_file_bytes()
  the header: 16 or 20 bytes, and the 2015 header (connected weights transposed) . _read_header()

File = header, then the float32 values of each layer with weights, in cfg order, nothing between them:
  header (parser.c at f6afaab, the layout of every file since 2016): int32 major, minor, revision; then `seen`
      (images trained on) as uint64 when major*10 + minor >= 2 and major < 1000 and minor < 1000 (20 bytes),
      else int32 (16 bytes).
  2015 header (parser.c at 6103ecc4, 2015-11-09, save_weights_upto): float32 learning rate, momentum, decay, then
      int32 seen (16 bytes). Today's darknet reads the first two floats as `major`, `minor`: their bits as int32 are
      far above 1000 (0.001 -> 981668463), and `transpose = (major > 1000) || (minor > 1000)` then reads every
      [connected] layer's weights as stored inputs x outputs (2015's forward_connected_layer: gemm(0,0,...)) and
      transposes them. We recognise these files by the same test and do the same.
  [convolutional]: biases (n), then if batch_normalize: scales γ (n), rolling mean (n), rolling variance (n);
      then weights (n, c, size, size) row-major = torch's Conv2d.weight layout.
  [connected]: biases (out), weights (out, in) row-major = torch's Linear.weight layout (forward_connected_layer:
      gemm(0, 1, ...) = input · Wᵀ), transposed (in, out) in 2015 files; then the batch norm values if any
      (connected layers with batch norm have no counterpart here; no cfg of ours uses one).
  [local] (local_layer.c): biases (out_h·out_w·n, ordered [n][y][x]), then for each output position an
      n x (c·size·size) matrix in im2col order: darknet.LocalLayer holds exactly these two tensors.
All little-endian, as darknet writes them on x86.

Output permutation hook. A connected layer whose output order differs between darknet and this project sets
`linear.darknet_permutation`: a sequence p of length out_features meaning our_output[o] = darknet_output[p[o]].
Loading then takes rows p of darknet's weights and biases; saving writes them back in darknet's order. YOLOv1's
detection layer needs it: darknet lays its output out as all S·S·C class probabilities, then all S·S·B
confidences, then all S·S·B·4 coordinates (detection_layer.c), while our layout is per cell (S, S, B*5+C).
yolov1.darknet_output_permutation builds p and sets it on its last nn.Linear.

Imported by models.py (and tests, tools); imports darknet.py.
"""
import os

import numpy as np
import torch
import torch.nn as nn

from darknet import ConvBlock, LocalLayer

# DARKNET parser.c (f6afaab): `transpose = (major > 1000) || (minor > 1000)`: a 2015 file's float header
OLD_FORMAT_ABOVE = 1000
# the header darknet wrote in 2015 (parser.c at 6103ecc4): the [net] section's learning_rate, momentum, decay,
# e.g. history/yolo.2015-11.cfg: 0.001, 0.9, 0.0005 (what save_darknet_weights writes with header_2015=True)
HEADER_2015 = (0.001, 0.9, 0.0005)


def darknet_layers(model):
    """Layers in darknet file order: every ConvBlock, LocalLayer and nn.Linear in model.modules() order, so a
    model must register its layers in cfg order. A bare nn.Conv2d would have no place in the file: refused."""
    layers, in_blocks = [], set()
    for module in model.modules():
        if isinstance(module, ConvBlock):
            layers.append(module)
            in_blocks.add(id(module.conv))
        elif isinstance(module, (nn.Linear, LocalLayer)):
            layers.append(module)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and id(module) not in in_blocks:
            raise ValueError(f"{name} is a bare nn.Conv2d; wrap it in darknet.ConvBlock so that its "
                             "place and layout in a darknet .weights file are defined")
    return layers


def _tensors_in_file_order(layer):
    """The tensors of one layer in the order darknet stores them."""
    if isinstance(layer, ConvBlock):
        if layer.bn is not None:
            bn = layer.bn
            return [bn.bias, bn.weight, bn.running_mean, bn.running_var, layer.conv.weight]
        return [layer.conv.bias, layer.conv.weight]
    if isinstance(layer, LocalLayer):
        return [layer.bias, layer.weight]           # (n, out_h, out_w), (out_h*out_w, n, c*size*size)
    if layer.bias is None:
        raise ValueError("a darknet [connected] layer always has biases; this nn.Linear has bias=False")
    return [layer.bias, layer.weight]


def _permutation(layer):
    """The layer's darknet_permutation as a LongTensor, checked, or None."""
    p = getattr(layer, "darknet_permutation", None)
    if p is None:
        return None
    p = torch.as_tensor(p, dtype=torch.long)
    if not torch.equal(torch.sort(p).values, torch.arange(layer.out_features)):
        raise ValueError(f"darknet_permutation of {layer} is not a permutation of 0..{layer.out_features - 1}")
    return p


def _layer_floats(layer):
    return sum(t.numel() for t in _tensors_in_file_order(layer))


def _header_bytes(major, minor):
    seen_is_uint64 = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    return 12 + (8 if seen_is_uint64 else 4)


def darknet_file_bytes(model, version=(0, 2, 0), num_layers=None):
    """Size in bytes of the darknet file for the first num_layers (default all) darknet_layers(model).
    version (0, 1, 0) and the 2015 header give 16-byte headers, (0, 2, 0) a 20-byte one."""
    layers = darknet_layers(model)[:num_layers]
    return _header_bytes(version[0], version[1]) + 4 * sum(_layer_floats(layer) for layer in layers)


def _read_header(f, path):
    """-> header dict (version or the 2015 floats, seen, bytes, transposed), checked: refuses anything not darknet's."""
    head = f.read(20)
    if head.startswith(b"PK\x03\x04"):
        raise ValueError(f"{path} is a zip archive (what torch.save writes), not a darknet .weights file; "
                         "load a project checkpoint with torch.load(path, weights_only=True)")
    if head[:1] == b"\x80":
        raise ValueError(f"{path} looks like a Python pickle (an old-style torch.save file), "
                         "not a darknet .weights file")
    if len(head) < 16:
        raise ValueError(f"{path} has {len(head)} bytes, shorter than a darknet header (16 or 20 bytes)")
    major, minor, revision = (int(v) for v in np.frombuffer(head[:12], "<i4"))
    if major > OLD_FORMAT_ABOVE or minor > OLD_FORMAT_ABOVE:       # 2015: learning rate, momentum, decay, seen
        floats = tuple(float(v) for v in np.frombuffer(head[:12], "<f4"))
        if not all(0 <= v <= 10 for v in floats):   # ours: text or other data also has large "versions"
            raise ValueError(f"{path} does not start with a darknet header: neither a version (0.1.0, 0.2.0) nor "
                             f"2015's learning rate, momentum and decay (read as floats: {floats})")
        seen = int(np.frombuffer(head[12:16], "<i4")[0])
        return dict(version=None, floats=floats, seen=seen, bytes=16, transposed=True)
    if not (0 <= major < 1000 and 0 <= minor < 1000 and 0 <= revision < 1000):
        raise ValueError(f"{path} does not start with a darknet header: version {major}.{minor}.{revision} "
                         "(darknet's files say 0.1.0 or 0.2.0, or hold 2015's learning rate, momentum and decay)")
    header_bytes = _header_bytes(major, minor)
    if len(head) < header_bytes:
        raise ValueError(f"{path} ends inside its {header_bytes}-byte darknet header")
    seen = int(np.frombuffer(head[12:header_bytes], "<u8" if header_bytes == 20 else "<i4")[0])
    return dict(version=(major, minor, revision), floats=None, seen=seen, bytes=header_bytes, transposed=False)


def read_header(path):
    """The checked header of the darknet file at path (_read_header's dict; models.preset_of_file needs its length)."""
    with open(path, "rb") as f:
        return _read_header(f, path)


def header_text(info):
    """The header of load_darknet_weights' result, in words: 'version 0.1.0' or the 2015 header's values."""
    if info["version"] is not None:
        return "version " + ".".join(map(str, info["version"]))
    lr, momentum, decay = info["floats"]
    return (f"2015 header: learning rate {lr:g}, momentum {momentum:g}, decay {decay:g}; "
            "connected weights stored transposed, read as darknet does")


def load_darknet_weights(model, path, prefix_ok=False):
    """Load a darknet .weights file into model (layers as darknet_layers(model) lists them).

    The file must hold exactly the model's values. With prefix_ok=True it may instead stop exactly at
    the end of a layer (a partial backbone such as extraction.conv.weights or darknet19_448.conv.23):
    those first layers are loaded, the rest keep their values. Anything else raises ValueError naming
    the file, the expected and the actual byte counts; sizes are checked before any value is copied,
    so the model is never loaded in part by mistake. A 2015 file (header_text) has its connected weights
    transposed back, as darknet's parser.c does.
    Returns dict(version=(major, minor, revision) or None, floats=the 2015 header's or None, seen=int,
    bytes=header length, transposed=bool, layers_loaded=int, layers_total=int).
    """
    layers = darknet_layers(model)
    permutations = [_permutation(layer) if isinstance(layer, nn.Linear) else None for layer in layers]
    actual = os.path.getsize(path)
    with open(path, "rb") as f:
        info = _read_header(f, path)
    header_bytes = info["bytes"]
    ends = np.cumsum([0] + [_layer_floats(layer) for layer in layers])       # float offsets of layer ends
    expected = header_bytes + 4 * int(ends[-1])
    num_loaded = len(layers) if actual == expected else None
    if num_loaded is None and prefix_ok:
        matches = np.flatnonzero(header_bytes + 4 * ends[1:] == actual)
        num_loaded = int(matches[0]) + 1 if len(matches) else None
    if num_loaded is None:
        hint = ("No layer of the model ends there either." if prefix_ok
                else "A partial backbone (only the first layers) needs prefix_ok=True: detect.py --partial; "
                     "train.py --weights takes one as it is.")
        raise ValueError(
            f"{path}: {actual:,} bytes, but {type(model).__name__} needs {expected:,} bytes "
            f"({header_bytes}-byte header, {header_text(info)}, + "
            f"{int(ends[-1]):,} float32 values in {len(layers)} layers); "
            f"difference {actual - expected:+,} bytes. {hint} Nothing was loaded.")

    values = torch.from_numpy(np.fromfile(path, dtype="<f4", count=int(ends[num_loaded]), offset=header_bytes))
    with torch.no_grad():
        for layer, p, start in zip(layers[:num_loaded], permutations, ends):
            offset = int(start)
            for t in _tensors_in_file_order(layer):
                chunk = values[offset: offset + t.numel()]
                offset += t.numel()
                if info["transposed"] and isinstance(layer, nn.Linear) and t is layer.weight:
                    chunk = chunk.view(layer.in_features, layer.out_features).t()   # stored (in, out) in 2015
                chunk = chunk.reshape(t.shape)
                t.copy_(chunk if p is None else chunk[p])   # bias (out,) or weight (out, in): rows p
    return dict(info, layers_loaded=num_loaded, layers_total=len(layers))


def save_darknet_weights(model, path, seen=0, version=(0, 2, 0), header_2015=False):
    """Write model in darknet's .weights format (the inverse of load_darknet_weights).

    version (major, minor, revision) decides the header: `seen` is written as uint64 for 0.2.x and
    later (darknet's save_weights_upto always writes 0.2.0), as int32 for 0.1.x. header_2015=True writes
    2015's header instead (HEADER_2015's learning rate, momentum, decay, then int32 seen) and every connected
    layer's weights transposed, as darknet's 2015 files hold them. The file is written to path + ".tmp" and
    renamed, so an interrupted save leaves no half file under path."""
    major, minor, revision = version
    if not (0 <= major < 1000 and 0 <= minor < 1000):
        raise ValueError(f"version {version}: darknet reads major or minor > 1000 as the 2015 format "
                         "(header_2015=True writes that one)")
    if header_2015:
        header = np.array(HEADER_2015, "<f4").tobytes() + np.array([seen], "<i4").tobytes()
    else:
        seen_dtype = "<u8" if _header_bytes(major, minor) == 20 else "<i4"
        header = np.array([major, minor, revision], "<i4").tobytes() + np.array([seen], seen_dtype).tobytes()
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header)
        for layer in darknet_layers(model):
            p = _permutation(layer) if isinstance(layer, nn.Linear) else None
            for t in _tensors_in_file_order(layer):
                is_weight = isinstance(layer, nn.Linear) and t is layer.weight
                t = t.detach().to("cpu", torch.float32)
                if p is not None:
                    t = t[torch.argsort(p)]         # darknet row q holds our row o where p[o] = q
                if header_2015 and is_weight:
                    t = t.t().contiguous()          # (in, out), 2015's layout
                f.write(t.numpy().astype("<f4").tobytes())
    os.replace(tmp, path)
