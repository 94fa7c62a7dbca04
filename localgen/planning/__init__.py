"""Planning: from a task file to every request a run will send, without an LLM.

`task` reads the task file, `prompts` renders the templates of `prompts/`, `schema` is the
row contract (JSON schema, the regex every backend takes, xgrammar's EBNF, the token
bound), `fit` measures each prompt against the context and shortens it, `requests` the
plan's parts, `strategies` how one request is asked (one function per strategy) and
`plan` how many of each, per label.
"""
