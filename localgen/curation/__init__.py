"""Curation: which generated rows to keep, and why each other row was dropped.

`rules` names the rules (light, for the command line), `checks` implements one function
per rule, `similarity` finds copied passages and near-duplicate groups, and `curate` runs
the rules, charges each drop and writes curated.parquet and curation.json.
"""
