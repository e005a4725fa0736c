"""Where the unpaired method's models are: one file per contrast (and variant) in a folder."""

from __future__ import annotations

from pathlib import Path

#: the ``desc-`` label of each unpaired variant's model file
MODEL_DESC = {"unpaired": "unpaired", "unpaired-nocontrast": "unpairednocontrast"}


def models_folder(config) -> Path:
    """``--unpaired-models``, else ``<output_dir>/models``."""
    return Path(config.workflow.unpaired_models or Path(config.execution.output_dir) / "models")


def model_file(folder: str | Path, suffix: str, variant: str = "unpaired") -> Path:
    """``<folder>/desc-<variant>_<suffix>.pt``."""
    return Path(folder) / f"desc-{MODEL_DESC[variant]}_{suffix}.pt"


def model_files_for(images: list[str], folder: str | Path, variant: str = "unpaired"
                    ) -> list[str]:
    """The model file of each image's contrast; ValueError naming the missing one and the fix."""
    from mcinr_bids.pipeline.bids import bids_suffix

    files = []
    for image in images:
        path = model_file(folder, bids_suffix(image), variant)
        if not path.is_file():
            raise ValueError(
                f"{image}: no unpaired model for {bids_suffix(image)} ({path} is missing); "
                "train one with 'mcinr-bids BIDS_DIR OUTPUT_DIR group --train-unpaired', or "
                "point --unpaired-models at a folder that has it.")
        files.append(str(path))
    return files
