#!/usr/bin/env bash
# Lesion fidelity (the paper's clinical claim) on the shared cases with tumour labels: strict
# PSNR / SSIM inside the BraTS lesion (OTMultiClass > 0) and in the brain, for clamped cubic,
# JTV and the default INR, through mcinr-evaluate (the engine's Table 1 path).
#
#   bash benchmarks/lesion_cases.sh OUT_DIR [SEED ...]      (default seed 0)
#
# Each case: T1c x4 along S and FLAIR x4 along R, both protocols (decimate, thick); one
# folder OUT_DIR/<case>_<protocol>_seed<S>/ with evaluation.tsv and evaluation.md.
set -euo pipefail
out="${1:?usage: lesion_cases.sh OUT_DIR [SEED ...]}"
shift
seeds=("${@:-0}")
[ ${#seeds[@]} -gt 0 ] || seeds=(0)
data="${MCINR_REAL_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data/real}"
for seed in "${seeds[@]}"; do
    for case in brats2013-pat0005 brats2013-pat0006; do
        for protocol in decimate thick; do
            folder="$out/${case}_${protocol}_seed${seed}"
            [ -f "$folder/evaluation.tsv" ] && continue
            mcinr-evaluate "$data/$case/T1c_subtrMeanDivStd.nii.gz" \
                "$data/$case/Flair_subtrMeanDivStd.nii.gz" --axes S R --protocol "$protocol" \
                --mask "$data/$case/brainmask.nii.gz" \
                --lesion-mask "$data/$case/OTMultiClass.nii.gz" \
                --methods cubic-clamped jtv split --random-seed "$seed" --quiet -o "$folder"
        done
    done
done
