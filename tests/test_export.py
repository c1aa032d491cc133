"""ONNX export (tools/export.py, detect.py --export), run in onnxruntime: darknet's reorg as plain data movement,
the raw output equal to PyTorch's for a preset of every detector family at a dynamic batch, and the same detections
after the family's post-processing. Skipped without onnx / onnxruntime (CI installs them: .ci/run)."""
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import darknet                                                             # noqa: E402 (after the skips)
import detect                                                            # noqa: E402
from tools.export import export_onnx                                     # noqa: E402
from conftest import randomized

# Small presets, one or more per family, at small sizes (the export traces the whole network; yolov2-voc's 50 M
# weights are the largest here). A family not listed is tested on its first preset at the preset's size.
CASES = {"yolov1": [("yolov1-shapes", None), ("yolov1-shapes-fc", None)],       # 1x1 conv head; the paper's FC head
         "yolov2": [("yolov2-tiny-voc", 64), ("yolov2-voc", 64)],                # no passthrough; reorg, 2 x 2 grid
         "yolo9000": [("yolo9000-shapes", None)]}


def presets_to_test():
    return [case for name, family in detect.FAMILIES.items()
            for case in CASES.get(name, [(sorted(family.PRESETS)[0], None)]) if case[0] in family.PRESETS]


def run_onnx(path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["raw"], {"images": x.numpy()})[0])


class Reorg(torch.nn.Module):
    def forward(self, x):
        return darknet.reorg(x)


def test_reorg_exports_as_reshape_transpose_reshape(tmp_path):
    export_onnx(Reorg(), tmp_path / "reorg.onnx", input_shape=(1, 8, 4, 6))
    graph = onnx.load(str(tmp_path / "reorg.onnx")).graph
    # follow the data from the input: every node that reads the data tensor (Shape nodes read only its shape)
    tensor, data_ops = "images", []
    while tensor != "raw":
        node = next(n for n in graph.node if n.input and n.input[0] == tensor and n.op_type != "Shape")
        data_ops.append(node.op_type)
        tensor = node.output[0]
    assert data_ops == ["Reshape", "Transpose", "Reshape"]        # the rest computes the shapes (dynamic batch)
    assert not {"GatherND", "ScatterND", "SpaceToDepth", "DepthToSpace"} & {n.op_type for n in graph.node}
    x = torch.randn(3, 8, 4, 6)                                   # batch 3 through a graph traced at 1
    assert torch.equal(run_onnx(tmp_path / "reorg.onnx", x), darknet.reorg(x))   # data movement: exact


def test_darknet_local_layer_and_ramp_activation_export(tmp_path):
    # the layers of yolov1.cfg ([local], im2col + one matrix per position) and of the 2015 yolo-small.cfg ("ramp"),
    # which the small presets above do not contain; the bench exports the full presets (bench/bench_export.py)
    torch.manual_seed(0)
    layers = torch.nn.Sequential(darknet.ConvBlock(3, 4, 3, activation="ramp"), darknet.LocalLayer(4, 5, 3, 6, 6))
    with torch.no_grad():
        for parameter in layers.parameters():
            parameter.normal_()
    layers = randomized(layers)                                   # batch-norm statistics too; eval mode
    export_onnx(layers, tmp_path / "layers.onnx", input_shape=(1, 3, 6, 6))
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        expected = layers(x)                                      # (2, 5, 6, 6)
    assert (run_onnx(tmp_path / "layers.onnx", x) - expected).abs().max() < 1e-4 * expected.abs().max()


@pytest.mark.parametrize("preset, img_size", presets_to_test())
def test_onnx_equals_pytorch_and_gives_the_same_detections(tmp_path, preset, img_size):
    family = detect.family_of(preset)
    torch.manual_seed(0)
    model = randomized(family.build(preset, img_size=img_size))
    print(export_onnx(model, tmp_path / "model.onnx"))
    size = model.img_size
    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1))   # batch 3: the batch is dynamic
    with torch.no_grad():
        expected = model(x)
    raw = run_onnx(tmp_path / "model.onnx", x)
    assert raw.shape == expected.shape
    scale = expected.abs().max().item()
    assert (raw - expected).abs().max().item() < 1e-4 * scale
    # the project's post-processing on onnxruntime's output: the same detections
    sizes = [(size, size), (2 * size, size), (size // 2, 3 * size)]
    conf = 1e-3 if family.__name__ == "yolov1" else 0.5 / model.num_classes   # random weights: low scores
    ours = family.detections(model, expected, sizes, conf, 0.45)
    theirs = family.detections(model, raw, sizes, conf, 0.45)
    assert sum(len(d["scores"]) for d in ours) > 0
    for a, b in zip(ours, theirs):
        assert torch.equal(a["labels"], b["labels"])
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-3) and torch.allclose(a["scores"], b["scores"], atol=1e-5)


def test_detect_export_option_writes_a_dynamic_batch_graph(tmp_path, capsys):
    torch.manual_seed(0)
    model = randomized(detect.family_of("yolov1-shapes").build("yolov1-shapes"))
    checkpoint = tmp_path / "shapes.pt"
    torch.save({"model_config": model.config, "class_names": ["circle", "rectangle", "triangle"],
                "model": model.state_dict()}, checkpoint)
    args = detect.get_args_parser().parse_args(["--weights", str(checkpoint), "--export", str(tmp_path / "s.onnx")])
    assert detect.main(args) == dict(exit_code=0, exported=str(tmp_path / "s.onnx"))
    # (batch, S, S, B*5 + C) = (batch, 7, 7, 2*5 + 3)
    assert "input images (batch, 3, 112, 112), output raw (batch, 7, 7, 13)" in capsys.readouterr().out
    graph = onnx.load(str(tmp_path / "s.onnx")).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 112, 112]
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        expected = model(x)
    assert (run_onnx(tmp_path / "s.onnx", x) - expected).abs().max() < 1e-4 * expected.abs().max()
