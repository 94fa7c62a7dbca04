"""Sentence vectors, shared by planning, curation, the report and the classifier.

`encoder` embeds texts with a local sentence encoder (and caches a run's vectors),
`neighbours` is exact blockwise cosine search, `linear` is the logistic-regression head.
"""
