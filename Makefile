# privnet: `make run` serves the app on 127.0.0.1:5000; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: run test bench lint system-packages clean vendor

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

run: $(BIN)/.installed
	mkdir -p instance
	$(BIN)/flask db upgrade
	$(BIN)/flask admin ensure admin
	@echo "privnet: open http://127.0.0.1:5000/ and log in as admin"
	$(BIN)/flask run --host 127.0.0.1 --port 5000

system-packages:
	scripts/system-packages.sh

test: $(BIN)/.installed system-packages
	scripts/test.sh

lint: $(BIN)/.installed
	$(BIN)/ruff check .

bench: $(BIN)/.installed system-packages
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python "$$script" || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Cytoscape.js for the topology map, from the npm registry (needs npm; `make run` does not). The
# vendored files are committed; this target reproduces them from the pinned version.
CYTOSCAPE_VERSION := 3.34.4
CYTOSCAPE_DIR := webapp/static/vendor/cytoscape

vendor:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	npm pack --silent --pack-destination "$$tmp" cytoscape@$(CYTOSCAPE_VERSION) >/dev/null && \
	tar -xzf "$$tmp/cytoscape-$(CYTOSCAPE_VERSION).tgz" -C "$$tmp" package/dist/cytoscape.min.js package/LICENSE && \
	mkdir -p $(CYTOSCAPE_DIR) && \
	cp "$$tmp/package/dist/cytoscape.min.js" "$$tmp/package/LICENSE" $(CYTOSCAPE_DIR)/ && \
	echo "cytoscape $(CYTOSCAPE_VERSION) from the npm registry (make vendor)" > $(CYTOSCAPE_DIR)/VERSION && \
	echo "vendor: $(CYTOSCAPE_DIR) <- cytoscape@$(CYTOSCAPE_VERSION)"
