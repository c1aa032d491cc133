"""
Data pipeline throughput: decoded, augmented, target-ready images per second per worker, at 448x448.

Writes its own VOC-layout folder of JPEGs (default 200 images of 500x375, textured, 1-4 boxes each, like VOC's
typical size), then times VOCDataset.__getitem__ in one process with one torch thread (= one DataLoader worker)
for no augmentation, YOLOv1 §2.2 and darknet's YOLOv2 augmentation, and the stages of one sample.
Goal: >= 100 images/s per worker.

Run: python bench/bench_data.py [--images 200] [--size 448]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402


def write_voc_folder(root, num_images, size=(500, 375), seed=0):
    rng = np.random.default_rng(seed)
    base = os.path.join(root, "VOCdevkit", "VOC2007")
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    W, H = size
    ids = [f"{i:06d}" for i in range(num_images)]
    for image_id in ids:
        # smooth noise plus grain: JPEG-decoding cost close to a photo's
        coarse = torch.from_numpy(rng.random((3, 12, 16), dtype=np.float32))
        pixels = data.resize_darknet(coarse, (W, H)).permute(1, 2, 0).numpy() * 200
        pixels += rng.random((H, W, 1), dtype=np.float32) * 55
        img = Image.fromarray(pixels.astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        objects = []
        for _ in range(int(rng.integers(1, 5))):
            w, h = int(rng.integers(30, W // 2)), int(rng.integers(30, H // 2))
            x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
            name = data.VOC_CLASSES[int(rng.integers(20))]
            objects.append(f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x + 1}</xmin>"
                           f"<ymin>{y + 1}</ymin><xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>")
        img.save(os.path.join(base, "JPEGImages", image_id + ".jpg"), quality=90)
        with open(os.path.join(base, "Annotations", image_id + ".xml"), "w") as f:
            f.write(f"<annotation><size><width>{W}</width><height>{H}</height></size>{''.join(objects)}</annotation>")
    with open(os.path.join(base, "ImageSets", "Main", "trainval.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")


def per_second(fn, n, repeats=3):
    """(wall-clock rate, CPU-time rate), best of `repeats` runs. On a shared machine the wall-clock rate depends
    on the load; the CPU-time rate (time.process_time) is what one worker gets from a core of its own."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            fn(i)
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return n / wall, n / cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=448)
    args = parser.parse_args()
    torch.set_num_threads(1)                                     # one DataLoader worker uses one thread
    with tempfile.TemporaryDirectory() as root:
        write_voc_folder(root, args.images)
        n, S = args.images, args.size
        ds = {a: data.VOCDataset(root, splits=[("2007", "trainval")], img_size=S, augment=a)
              for a in (None, "yolov1", "yolov2")}
        ds[None][0]                                              # warm up
        path = ds[None].record(0)["path"]
        img = data.load_image(path)
        tensor = data.image_to_tensor(img)
        resized = data.resize_darknet(tensor, (S, S))
        rng = np.random.default_rng(0)
        print(f"{n} JPEGs of 500x375 -> {S}x{S}, 1 process, 1 torch thread, "
              f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
        print("stage                                   wall /s   cpu /s  cpu ms")
        stages = [("load_image (JPEG decode + RGB)", lambda i: data.load_image(path)),
                  ("image_to_tensor", lambda i: data.image_to_tensor(img)),
                  ("resize_darknet 500x375 -> S", lambda i: data.resize_darknet(tensor, (S, S))),
                  ("letterbox_darknet", lambda i: data.letterbox_darknet(tensor, (S, S))),
                  ("distort_hsv at S", lambda i: data.distort_hsv(resized, 0.05, 1.2, 0.9)),
                  ("augment_yolov1 (tensor in)", lambda i: data.augment_yolov1(
                      tensor, torch.tensor([[10., 10, 100, 100]]), rng, (S, S))),
                  ("augment_yolov2 (tensor in)", lambda i: data.augment_yolov2(
                      tensor, torch.tensor([[10., 10, 100, 100]]), rng, (S, S)))]
        for name, fn in stages:
            wall, cpu = per_second(fn, 30)
            print(f"{name:38s} {wall:8.1f} {cpu:8.1f} {1000 / cpu:7.2f}")
        print("dataset[i], whole pipeline (images/s)   wall /s   cpu /s  cpu ms   goal >= 100/s per worker")
        for augment, dataset in ds.items():
            wall, cpu = per_second(lambda i: dataset[i], n, repeats=2)
            print(f"{'augment=' + str(augment):38s} {wall:8.1f} {cpu:8.1f} {1000 / cpu:7.2f}   "
                  f"wall: {'met' if wall >= 100 else 'not met'}, cpu: {'met' if cpu >= 100 else 'not met'}")


if __name__ == "__main__":
    main()
