"""A folder dataset of 28×28 grey patches of real photographs, to test training beyond MNIST.

    python bench/photo_patches.py --output=runs/photo_patches
    python train.py --dataset=folder:runs/photo_patches --workdir=runs/photo ...
    python bench/photo_patches.py --output=runs/colour_patches --colour --size=32
    python train.py --preset=cifar10 --dataset=folder:runs/colour_patches ...

The photographs are the sample images bundled in scikit-image's wheel (astronaut, camera, coffee,
…; downloaded with ``pip download``, nothing installed). Patches are cut at random positions and
scales (side 28–112 pixels, resized to 28×28, grey); the test split comes from photographs the
training split never sees, so test bits/dim measures generalisation. Files are PNGs under
``<output>/train`` and ``<output>/test``, the layout ``--dataset=folder:`` reads. ``--colour``
cuts RGB patches from the photographs that are in colour (the grey ones are left out), and
``--size`` sets the patches' side (32 for the 32×32×3 presets).
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from PIL import Image

PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png",
          "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
          "motorcycle_left.png", "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg",
          "text.png", "clock_motion.png")
TEST_PHOTOS = ("camera.png", "coffee.png", "gravel.png", "rocket.jpg")


def photographs(folder, colour=False):
    """``{name: uint8 array}`` of the bundled photographs, from scikit-image's wheel: all of them
    grey ``[H, W]``, or with ``colour`` those in colour, ``[H, W, 3]``."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d",
                    folder, "scikit-image==0.26.0"], check=True)
    wheel = glob.glob(os.path.join(folder, "scikit_image-*.whl"))[0]
    images = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in PHOTOS:
            with archive.open(f"skimage/data/{name}") as handle:
                image = Image.open(handle)
                if not colour:
                    images[name] = np.asarray(image.convert("L"))
                elif image.mode in ("RGB", "RGBA"):
                    images[name] = np.asarray(image.convert("RGB"))
    return images


def patches(image, count, rng, size=28):
    height, width = image.shape[:2]
    for _ in range(count):
        side = int(rng.randint(size, min(4 * size, height, width) + 1))
        top, left = rng.randint(0, height - side + 1), rng.randint(0, width - side + 1)
        crop = Image.fromarray(image[top:top + side, left:left + side])
        yield np.asarray(crop.resize((size, size), Image.BILINEAR))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--train_per_photo", type=int, default=2000)
    parser.add_argument("--test_per_photo", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=28, help="side of the square patches")
    parser.add_argument("--colour", action="store_true",
                        help="RGB patches of the photographs in colour")
    args = parser.parse_args()
    rng = np.random.RandomState(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        images = photographs(folder, args.colour)
    for name, image in sorted(images.items()):
        split = "test" if name in TEST_PHOTOS else "train"
        count = args.test_per_photo if split == "test" else args.train_per_photo
        directory = os.path.join(args.output, split)
        os.makedirs(directory, exist_ok=True)
        stem = os.path.splitext(name)[0]
        for index, patch in enumerate(patches(image, count, rng, args.size)):
            Image.fromarray(patch).save(os.path.join(directory, f"{stem}_{index:05d}.png"))
    tested = sorted(set(images) & set(TEST_PHOTOS))
    print(f"wrote {args.output}/train ({len(images) - len(tested)} photographs) and "
          f"{args.output}/test ({len(tested)} photographs: {', '.join(tested)})")


if __name__ == "__main__":
    main()
