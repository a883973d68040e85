"""Organ label maps as files: TotalSegmentator's numbering and the ``organ_classes.json`` table.

``TotalSegmentator -i ct.nii.gz -o <case>.nii.gz --ml`` writes one multi-label map per case in
the numbering of its v2 ``total`` task; :data:`TOTALSEGMENTATOR_TOTAL` holds the structures this
project uses. A folder of organ maps may carry ``organ_classes.json`` (``{"<value>": "<name>"}``,
TotalSegmentator's structure names) for any other numbering, e.g. maps merged from several
TotalSegmentator tasks or the phantoms' maps (which add the salivary glands).
"""
from __future__ import annotations

ORGAN_CLASSES_FILE = "organ_classes.json"

# value -> name in TotalSegmentator v2's ``total`` task (the subset this project reads)
TOTALSEGMENTATOR_TOTAL: dict[int, str] = {
    1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 18: "small_bowel", 19: "duodenum",
    20: "colon", 21: "urinary_bladder", 51: "heart", 90: "brain",
}
