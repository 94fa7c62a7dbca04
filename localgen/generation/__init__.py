"""Generation: a plan through an engine into a run folder of validated rows.

`prepare` reads the inputs, resolves the model and its context and builds the plan, once,
for `plan`, `generate`, `run --keep` and `boost`; `generate` opens the run folder, starts
the engine and finishes the run; `passes` is the run's passes through the engine (rows,
retries, the second pass, the label check) and the writer of its shards; `rows` is the
stored row and its provenance; `store` is the run folder on disk; `manifest` what the run
records about itself; `rejects` reads --reject; `show` is the views for people (a plan, a
run's rows).
"""
