# privnet: `make run` serves the app on 127.0.0.1:5000; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: run test bench lint system-packages clean

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
