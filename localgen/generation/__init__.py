"""Generation: a plan through an engine into a run folder of validated rows.

`generate` runs the passes, retries and resume; `rows` is the stored row and its
provenance; `store` is the run folder on disk; `manifest` what the run records about
itself; `rejects` reads --reject; `show` is the views for people (a plan, a run's rows).
"""
