# The training platforms' loaders (anchors/<name>/), each in .venv-anchors/<name>, keyed by its lock file.
ANCHORS := $(patsubst anchors/%/requirements.lock,%,$(wildcard anchors/*/requirements.lock))
ANCHOR_STAMPS := $(foreach a,$(ANCHORS),.venv-anchors/$(a)/.installed-$(shell sha256sum anchors/$(a)/requirements.lock | cut -c1-16))

.PHONY: anchors anchors-lock
anchors: $(ANCHOR_STAMPS)
$(ANCHOR_STAMPS): venv
	@name=$$(echo $@ | cut -d/ -f2); \
	  rm -rf .venv-anchors/$$name && $(BIN)/uv venv -q --python $(BIN)/python .venv-anchors/$$name && \
	  $(BIN)/uv pip install -q --python .venv-anchors/$$name/bin/python -r anchors/$$name/requirements.lock && \
	  touch $@

# After editing an anchor's requirements.in.
anchors-lock: venv
	@for a in $(patsubst anchors/%/requirements.in,%,$(wildcard anchors/*/requirements.in)); do \
	  $(BIN)/uv pip compile -q --generate-hashes anchors/$$a/requirements.in -o anchors/$$a/requirements.lock; done

SDK_INSTALL += anchors
