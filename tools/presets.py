"""
Which official darknet file is this? Its exact size says. Not in the papers: darknet's .weights files hold only
numbers, no cfg name, so a file given without --model is recognised by its size (detect.py, train.py --weights).

  every preset with an official file, by exact size (16- and 20-byte headers) ........ official_sizes()
  the preset of a file, or a refusal listing the known sizes ............................ preset_of_file()

The sizes come from each family file's PRESETS ("weights_bytes", the size with darknet's 16-byte header); the
families are passed in (detect.FAMILIES), so this file imports no model file but darknet.py (the header reader).
"""
import os

import darknet


def official_sizes(families) -> dict[int, tuple[str, int]]:
    """{file size: (preset, header bytes)} for every preset of families (the family modules) with an official
    darknet file, from its PRESETS entry's "weights_bytes" (the size with darknet's 16-byte header: version 0.1
    with an int32 `seen`, or 2015's three floats and an int32). Darknet since 14676214 (2017-06-12) writes version
    0.2 with a uint64 `seen`, a 20-byte header: the same network's file is then 4 bytes longer, and is recognised too."""
    sizes = {}
    for family in families:
        for preset, p in family.PRESETS.items():
            for header in (16, 20) if "weights_bytes" in p else ():
                size = p["weights_bytes"] - 16 + header
                if size in sizes:       # every official file of both papers has a size of its own
                    raise ValueError(f"{preset} and {sizes[size][0]} both have {size:,}-byte files")
                sizes[size] = (preset, header)
    return sizes


def preset_of_file(path: str, families) -> tuple[str, int]:
    """-> (preset, header bytes) of the official darknet file whose size path has exactly, with the header length
    its own header gives (darknet.read_header); any other size is refused with the list of known ones."""
    size, header, sizes = os.path.getsize(path), darknet.read_header(path)["bytes"], official_sizes(families)
    if size not in sizes or sizes[size][1] != header:
        known = ", ".join(f"{preset} {n:,}" for n, (preset, h) in sorted(sizes.items()) if h == 16)
        raise ValueError(f"{path}: {size:,} bytes with a {header}-byte header is the size of no official darknet "
                         f"file; name its network with --model. Known sizes with a 16-byte header (4 more with a "
                         f"20-byte one): {known}")
    return sizes[size]
