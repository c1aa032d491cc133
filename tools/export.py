"""
ONNX export of a detector network (not in the papers: deployment). Reached by
  python detect.py --model yolov2-voc --weights yolov2-voc.weights --export yolov2-voc.onnx

The graph is the network alone, as the family's forward() computes it:
  input  "images": (batch, 3, img_size, img_size) RGB in [0, 1], resized as darknet does (detect.preprocess)
  output "raw":    YOLOv2 (batch, A*(5+C), H, W) in yolov2.py's channel order; YOLOv1 (batch, S, S, B*5+C)
The batch dimension is dynamic; the image size is the one exported (YOLOv1's connected layers fix it). Decoding and
NMS stay in Python: give the output, as a tensor, to the family's detections() (yolov2.postprocess needs the
anchors, the model's `anchors` buffer), as detect.predict does with PyTorch's output. tests/test_export.py checks
that onnxruntime's output equals PyTorch's for each family and that the decoded detections are the same.

Exporter: OUR CHOICE, torch.onnx.export(dynamo=False), the TorchScript tracer: it needs the onnx package beside
torch (`pip install onnx`; torch 2.13 raises OnnxExporterError "Module onnx is not installed!" without it, so we
check first and say so in one line), and not onnxscript, which torch's default since 2.9, the dynamo exporter, also
needs. Torch 2.13 marks the tracer deprecated and still ships it. Batch norm is folded into the convolutions in eval mode (constant folding), and darknet.reorg
traces to Reshape -> Transpose -> Reshape (with Shape arithmetic for the dynamic batch), no gather or depth ops.
"""
import importlib.util
import warnings
from pathlib import Path

import torch

# OUR CHOICE: opset 17 (ONNX 1.12, 2022): every operator here exists in it, torch >= 2.1 writes it, and
# onnxruntime >= 1.13 runs it.
OPSET = 17


def export_onnx(model, path, input_shape=None, opset: int = OPSET) -> str:
    """Write model's eval-mode network to path as ONNX, traced at input_shape, default (1, 3, model.img_size,
    model.img_size); any batch size runs it -> a one-line message with the input and output shapes."""
    try:
        missing = importlib.util.find_spec("onnx") is None
    except ValueError:                      # a module set to None in sys.modules (how the tests hide it)
        missing = True
    if missing:
        raise ValueError(f"{path}: the ONNX export needs the onnx package beside torch: pip install onnx")
    was_training = model.training
    model.eval()
    shape = input_shape or (1, 3, model.img_size, model.img_size)
    x = torch.zeros(shape, device=next(model.parameters(), torch.zeros(0)).device)    # a layer may have no weights
    with torch.no_grad(), warnings.catch_warnings():
        # Quiet, since harmless here (tests/test_export.py compares the graph with PyTorch instead): the tracer's
        # warnings on the shape checks of forward() and darknet.reorg (Python conditions on the traced sizes, true
        # at every batch size), the exporter's deprecation, and constant folding skipped for the reversed Slice of
        # darknet.maxpool's padding.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1")
        out_shape = tuple(model(x).shape[1:])
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["images"],
                          output_names=["raw"], dynamic_axes={"images": {0: "batch"}, "raw": {0: "batch"}})
    model.train(was_training)
    return (f"wrote {path}: ONNX opset {opset}, input images (batch, {', '.join(map(str, shape[1:]))}), "
            f"output raw (batch, {', '.join(map(str, out_shape))})")
