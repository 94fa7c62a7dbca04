"""The curation rules, in the order a dropped row is charged to them, and the row sources.

Only names live here, so the command line can offer them without importing the
implementation (polars, numpy) at start-up; `localgen.curation.curate` implements them.
"""

RULES = (
    "length",
    "markup",
    "exact-duplicate",
    "leakage",
    "contamination",
    "near-duplicate",
    "label-consistency",
    "on-topic",
    "label-fidelity",
    "surplus",  # after the others: rows of a label beyond --keep, of those still kept
)
# What curation does with the rows the label judge disputes: keep them flagged, drop them
# all, or drop only those it is confident about when it cross-validates well.
MISLABELED_ACTIONS = ("flag", "drop", "confident")

# Which rows of a run a command reads: curated.parquet when curate has run (auto), the
# curated rows (an error before curate), or every generated row (raw).
ROW_SOURCES = ("auto", "curated", "raw")
