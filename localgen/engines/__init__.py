"""Engines: what turns planned requests into raw completions.

Each adapter lives in its own module and imports its heavy library lazily, so that
`localgen --help` is instant and a missing engine gives an install hint. An engine gets
every request of a pass at once (so vLLM can batch them continuously) and yields each
completion as soon as it is finished, in any order. Engines do not validate or store
rows; `localgen.generation.generate` does.

`base` holds the protocol every adapter implements; `loader` checks settings and starts
an adapter; `vllm_setup` holds the settings vLLM runs with in process and as a server
(`server`, `localgen serve`); `auth` reads the key and certificate authority of the
HTTP path.

In-process: `vllm`, `transformers`, `fake`. Elsewhere: `openai` sends each request to an
OpenAI-compatible server, and `ray_actors` runs several in-process engines as Ray
actors (`--replicas`), behind the same interface.
"""
