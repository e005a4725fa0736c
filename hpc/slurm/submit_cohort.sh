#!/bin/bash
# Submit a whole cohort: one participant array job, then the group level once it has ended.
#
#   hpc/slurm/submit_cohort.sh BIDS_DIR OUTPUT_DIR [mcinr-bids options ...]
#
# SUBJECT_LIST, MCINR_CMD, EXIT_TSV, SCRATCH_DIR are passed on to the jobs; SBATCH_ARGS adds
# sbatch options to both (e.g. "--account=abc --partition=gpu --gres=gpu:1").
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 BIDS_DIR OUTPUT_DIR [mcinr-bids options]" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
bids_dir=$(cd "$1" && pwd)
mkdir -p "$2"
output_dir=$(cd "$2" && pwd)
shift 2
list=${SUBJECT_LIST:-$bids_dir/participants.tsv}
if [[ "$list" == *.tsv ]]; then
    count=$(awk -F'\t' 'NR > 1 && $1 != ""' "$list" | wc -l)
else
    count=$(grep -cv '^[[:space:]]*$' "$list")
fi
if [ "$count" -lt 1 ]; then
    echo "no participants in $list" >&2
    exit 2
fi
read -r -a extra <<< "${SBATCH_ARGS:-}"
mkdir -p "$output_dir/logs"
array_job=$(sbatch --parsable "${extra[@]}" --array="1-$count" --export=ALL \
    --output="$output_dir/logs/participant-%A_%a.log" \
    "$here/participant_array.sbatch" "$bids_dir" "$output_dir" "$@")
array_job=${array_job%%;*}
group_job=$(sbatch --parsable "${extra[@]}" --dependency="afterany:$array_job" --export=ALL \
    --output="$output_dir/logs/group-%j.log" "$here/group.sbatch" "$bids_dir" "$output_dir")
echo "participant array: $array_job ($count tasks); group: ${group_job%%;*}"
