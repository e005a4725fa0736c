"""Rigid alignment refined inside the fit: six parameters per image (a rotation about the
centre of the coordinate box and a translation, in millimetres) trained with the INR.

The registration that gives each image its starting transform matches intensities (mutual
information); the fit then moves every image except the reference to where the shared trunk
explains all images best.  A registration 0.26 mm off on one image costs the other images'
reconstruction too (measured in ``benchmarks/RESULTS.md``).  After the fit the refinement is
folded into the image's world-to-world transform (:meth:`ImageAlignment.folded_transforms`),
so that prediction, masks and every later step see one transform per image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: rotations are parametrised as the arc in millimetres at this distance from the centre, so
#: that one learning rate (mm per step) moves rotations and translations alike
LEVER_MM = 50.0


def rotation_matrices(rotation_vectors: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (N, 3, 3) of rotation vectors (N, 3) in radians.

    Rodrigues' formula with its coefficients as Taylor series (exact to 1e-8 up to 0.2 rad,
    11 degrees, far beyond a refinement's range): smooth at zero, where the closed form's
    gradient is undefined, and free of ``matrix_exp`` (not on every device).
    """
    x, y, z = rotation_vectors.unbind(1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], 1).view(-1, 3, 3)
    angle2 = (rotation_vectors**2).sum(1).view(-1, 1, 1)
    first = 1 - angle2 / 6 + angle2**2 / 120
    second = 0.5 - angle2 / 24 + angle2**2 / 720
    identity = torch.eye(3, dtype=rotation_vectors.dtype, device=rotation_vectors.device)
    return identity + first * skew + second * (skew @ skew)


class ImageAlignment(nn.Module):
    """Per-image rigid refinement in normalised coordinates.

    ``parameters`` (N, 6): the rotation (arc in mm at :data:`LEVER_MM`) and the translation
    (mm) of each image; ``free`` (N, 1) is 0 for the reference, which stays where it is.
    """

    def __init__(self, n_images: int, extent_mm):
        super().__init__()
        self.offsets = nn.Parameter(torch.zeros(n_images, 6))
        self.register_buffer("free", torch.ones(n_images, 1))
        self.register_buffer("half_extent",
                             torch.as_tensor(np.asarray(extent_mm) / 2.0, dtype=torch.float32))

    def fix(self, reference: int) -> None:
        """Keep image ``reference`` where its transform puts it (and only that one)."""
        self.free.fill_(1.0)
        self.free[reference] = 0.0

    def rigid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each image's rotation (N, 3, 3) and translation (N, 3) in mm."""
        offsets = self.offsets * self.free
        return rotation_matrices(offsets[:, :3] / LEVER_MM), offsets[:, 3:]

    def forward(self, points: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Normalised points (B, 3) of the images ``image`` (B,) moved by their refinement."""
        rotation, translation = self.rigid()
        millimetres = points * self.half_extent
        moved = torch.einsum("bij,bj->bi", rotation[image], millimetres) + translation[image]
        return moved / self.half_extent

    def world_matrices(self, centre_mm: np.ndarray) -> list[np.ndarray]:
        """Each image's refinement as a 4x4 world-to-world matrix (rotation about
        ``centre_mm``, the coordinate box's centre, then the translation)."""
        with torch.no_grad():
            rotation, translation = (t.double().cpu().numpy() for t in self.rigid())
        matrices = []
        for turn, shift in zip(rotation, translation):
            matrix = np.eye(4)
            matrix[:3, :3] = turn
            matrix[:3, 3] = centre_mm + shift - turn @ centre_mm
            matrices.append(matrix)
        return matrices

    def folded_transforms(self, transforms: list, centre_mm: np.ndarray) -> list:
        """``transforms`` (4x4 or None each) followed by the refinement; the refinement is then
        reset to zero, so that it is not applied twice."""
        folded = [refinement @ (np.eye(4) if transform is None else np.asarray(transform))
                  for refinement, transform in zip(self.world_matrices(centre_mm), transforms)]
        with torch.no_grad():
            self.offsets.zero_()
        return folded

    def summary(self, names: list[str]) -> dict:
        """The refinement of each image (JSON types): translation (mm) and rotation (degrees)."""
        with torch.no_grad():
            offsets = (self.offsets * self.free).double().cpu().numpy()
        return {name: {"translation_mm": [round(float(v), 3) for v in row[3:]],
                       "rotation_deg": round(float(np.degrees(
                           np.linalg.norm(row[:3]) / LEVER_MM)), 3)}
                for name, row in zip(names, offsets)}


def parameter_groups(model: nn.Module, settings) -> list[dict]:
    """The optimiser's parameter groups: the model's, and the alignment's at its own learning
    rate (``settings.alignment_learning_rate``, mm per step) when the model has one."""
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if not n.startswith("alignment.")]}]
    refinement = [p for n, p in named if n.startswith("alignment.")]
    if refinement:
        groups.append({"params": refinement, "lr": settings.alignment_learning_rate})
    return groups


def fold_refinement(fitted) -> None:
    """Fold the refinement of ``fitted.model.alignment`` into ``fitted.transforms`` (in place;
    recorded in ``fitted.alignment``; the refinement is reset to zero)."""
    alignment = fitted.model.alignment
    centre = (fitted.normaliser.low + fitted.normaliser.high) / 2.0
    fitted.alignment = alignment.summary(fitted.names)
    fitted.transforms = alignment.folded_transforms(fitted.transforms, centre)
    fitted._dilated_masks = None  # the masks' placement changed
