"""The README's picture: one plane across the thick slices of the demo's T1w (4 mm axial
slices), the acquired slices next to clamped cubic splines, the mcinr-bids output and the
truth.

    mcinr-demo demo_output && python benchmarks/readme_figure.py demo_output docs/_static/demo.png
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from mcinr_bids.core.interpolation import cubic_on_grid  # noqa: E402
from mcinr_bids.quality import metrics  # noqa: E402
from mcinr_bids.quality.phantom import make_phantom  # noqa: E402


def main(demo: str, out: str) -> None:
    truth, _, mask, affine = make_phantom(shape=(96, 96, 72), seed=0)
    acquired = nib.load(f"{demo}/inputs/sub-demo_T1w.nii.gz")
    output = nib.load(f"{demo}/superres/sub-demo_T1w_desc-superres.nii.gz").get_fdata()
    low = np.asarray(acquired.dataobj, dtype=np.float64)
    cubic = cubic_on_grid(low, acquired.affine, truth.shape, affine, clamp=True)
    # the acquired slices shown as the scanner gives them: each 4 mm slab repeated
    factor = truth.shape[2] // low.shape[2]
    blocky = np.repeat(low, factor, axis=2)[..., :truth.shape[2]]
    column = truth.shape[1] // 2
    panels = [("acquired: 4 mm axial slices", blocky), ("clamped cubic", cubic),
              ("mcinr-bids (INR)", output), ("truth (1 mm)", truth)]
    low_value, high_value = np.percentile(truth[mask], [1, 99.5])
    figure, axes = plt.subplots(1, 4, figsize=(12, 3.6))
    for axis, (title, image) in zip(axes, panels):
        psnr = "" if image is truth or image is blocky else (
            f"\n{metrics.psnr(image, truth, mask):.1f} dB")
        axis.imshow(np.rot90(image[:, column, :]), cmap="gray", vmin=low_value,
                    vmax=high_value, interpolation="nearest")
        axis.set_title(title + psnr, fontsize=10)
        axis.axis("off")
    figure.suptitle("Coronal plane across the thick slices (the demo's synthetic head)",
                    fontsize=11)
    figure.tight_layout()
    figure.savefig(out, dpi=90, bbox_inches="tight")


if __name__ == "__main__":
    main(*sys.argv[1:3])
