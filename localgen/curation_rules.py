"""The curation rules, in the order a dropped row is charged to them.

Only names live here, so the command line can offer them without importing the
implementation (polars, numpy) at start-up; `localgen.curate` implements them.
"""

RULES = (
    "length",
    "exact-duplicate",
    "leakage",
    "contamination",
    "near-duplicate",
    "label-fidelity",
)
