"""Whole jobs over every stage: `run` (generate, curate, train three ways, compare on
real test data; `keep`: its generation and curation in rounds until enough rows pass)
and `boost` (rounds of variants of the classifier's mistakes, kept only when they help).
"""
