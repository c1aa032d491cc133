"""float32 or bfloat16: tools/devices.py's choice from the CPU's flags (injected here, so every machine checks every
case), and what detect.py and train.py do with it. On a CPU without native bfloat16 torch emulates it: the bf16
paths run (slowly) and give the same roundings, so these tests hold everywhere. detect.py's own bf16 checks (the
hand-set model's scores rounded to 8 bits, the first output line) are in test_detect.py."""
import pytest
import torch

import detect
import train
import yolov2
from conftest import randomized
from tools import devices

# What torch.cpu.get_capabilities() reports, cut to the flags that matter (the real mapping has ~60 keys)
SAPPHIRE_RAPIDS = {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_tile": True, "amx_bf16": True}
ZEN4 = {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_tile": False, "amx_bf16": False}
SKYLAKE_SERVER = {"avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": False}
LAPTOP_AVX2 = {"avx2": True}


def test_bf16_where_the_cpu_computes_in_it_else_fp32():
    assert devices.choose_precision("cpu", capabilities=SAPPHIRE_RAPIDS) == "bf16"      # AMX and AVX512_BF16
    assert devices.choose_precision("cpu", capabilities=ZEN4) == "bf16"                 # AVX512_BF16 alone
    assert devices.choose_precision("cpu", capabilities={"amx_bf16": True}) == "bf16"   # AMX alone
    assert devices.choose_precision("cpu", capabilities=SKYLAKE_SERVER) == "fp32"       # AVX-512 without bf16
    assert devices.choose_precision("cpu", capabilities=LAPTOP_AVX2) == "fp32"
    assert devices.choose_precision("cpu", capabilities={}) == "fp32"                   # a torch that reports none
    assert devices.choose_precision("cuda", capabilities=SAPPHIRE_RAPIDS) == "fp32"     # the GPU's host CPU: no


def test_requested_precision_wins_and_others_are_refused():
    assert devices.choose_precision("cpu", "fp32", SAPPHIRE_RAPIDS) == "fp32"
    assert devices.choose_precision("cpu", "bf16", LAPTOP_AVX2) == "bf16"               # emulated, but asked for
    assert devices.choose_precision("cuda", "bf16", {}) == "bf16"
    with pytest.raises(ValueError, match="--precision fp16: expected one of fp32, bf16"):
        devices.choose_precision("cpu", "fp16", SAPPHIRE_RAPIDS)


def test_training_autocast_by_default_only_on_a_bf16_cpu():
    assert devices.default_amp("cpu", "bf16") is True
    assert devices.default_amp("cpu", "fp32") is False
    assert devices.default_amp("cuda", "bf16") is False         # a GPU trains in float32 unless --amp


def test_the_programs_say_which_precision_and_why():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert devices.describe_precision(cpu, "bf16", None, SAPPHIRE_RAPIDS) == (
        "precision bf16 on cpu: this CPU computes in bfloat16 (avx512_bf16, amx_bf16); --precision fp32 for float32")
    assert devices.describe_precision(cpu, "fp32", None, SKYLAKE_SERVER) == (
        "precision fp32 on cpu: this CPU has no native bfloat16 (avx512_bf16, amx_bf16); --precision bf16 emulates "
        "it, slowly")
    assert devices.describe_precision(cpu, "fp32", "fp32", ZEN4) == "precision fp32 on cpu: as --precision asks"
    assert devices.describe_precision(cuda, "fp32") == (
        "precision fp32 on cuda:0: the default off the CPU; --precision bf16 for bfloat16")


def test_native_bf16_reads_torchs_flags(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: dict(ZEN4))
    assert devices.native_bf16() and devices.choose_precision("cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: dict(SKYLAKE_SERVER))
    assert not devices.native_bf16() and devices.choose_precision("cpu") == "fp32"
    monkeypatch.delattr(torch.cpu, "get_capabilities")          # an older torch: nothing known, float32
    assert devices.cpu_capabilities() == {} and devices.choose_precision("cpu") == "fp32"


def tiny_model_and_images():
    """A small YOLOv2 at 96 px with random batch-norm statistics, and two random images."""
    torch.manual_seed(0)
    model = randomized(yolov2.build("yolov2-tiny-voc", img_size=96))
    return model, torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))


def test_fp32_is_the_plain_forward_bit_for_bit():
    model, x = tiny_model_and_images()
    with torch.no_grad():
        plain = model(x)
    assert torch.equal(model(x).detach(), plain)
    found = detect.predict(model, x, [(96, 96)] * 2, conf=0.0, nms=1.0, precision="fp32")
    again = yolov2.detections(model, plain, [(96, 96)] * 2, 0.0, 1.0, False, (96, 96))
    assert all(torch.equal(a["scores"], b["scores"]) and torch.equal(a["boxes"], b["boxes"])
               for a, b in zip(found, again))


def test_bf16_raw_output_within_the_stated_tolerance():
    # README (Performance): bfloat16's raw outputs differ from float32's by at most 1% of the output's largest
    # |value| (bench/bench_bf16.py measured 0.28%-0.52% over every preset); here a small YOLOv2 with random batch-norm
    # statistics (0.30% measured)
    model, x = tiny_model_and_images()
    with torch.no_grad():
        exact = model(x)
        with devices.autocast("cpu", "bf16"):
            rounded = model(x.contiguous(memory_format=torch.channels_last)).float()
    assert rounded.dtype == torch.float32 and not torch.equal(rounded, exact)        # it did run in bfloat16
    assert (rounded - exact).abs().max() <= 0.01 * exact.abs().max()


def test_train_chooses_amp_from_the_precision(tmp_path, capsys):
    base = ["--img-size", "64", "--train-images", "16", "--val-images", "8", "--batch-size", "8", "--epochs", "1",
            "--workers", "0", "--no-plots"]
    train.main(train.get_args_parser().parse_args([*base, "--out", str(tmp_path / "a"), "--precision", "bf16"]))
    assert "training in bfloat16 autocast, evaluating in bf16" in capsys.readouterr().out
    train.main(train.get_args_parser().parse_args([*base, "--out", str(tmp_path / "b"), "--precision", "fp32"]))
    assert "training in float32, evaluating in fp32" in capsys.readouterr().out
    checkpoint = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert (checkpoint["config"]["precision"], checkpoint["config"]["amp"]) == ("fp32", False)   # resumed so
