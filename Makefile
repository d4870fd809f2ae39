# posemask: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean-work shipped-model browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

## demo: install, run the whole DAG on data/sample/ offline, print where the report is
demo: $(STAMP)
	$(BIN)/luigi --module pipeline EvaluateAll --local-scheduler
	$(BIN)/luigi --module pipeline GenerateMasks --local-scheduler \
		--input-dir data/sample/photos --output-dir data/work/demo-masks
	@$(BIN)/python -c "from pipeline import EvaluateAll; print('\nposemask report:', EvaluateAll().output().path + '/report.html')"
	@echo "posemask masks:  data/work/demo-masks/"

## test: install with test extras (and Chromium for the review page's browser test), ruff, pytest
test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	POSEMASK_BROWSER_TEST=required $(BIN)/python -m pytest -q

## browser: Debian's headless Chromium, which tests/pipeline/test_review_browser.py drives (Playwright)
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		{ echo "installing chromium (apt-get) for the review page's browser test"; \
		  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q chromium >/dev/null || \
		  { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -q >/dev/null && \
		    $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -q chromium >/dev/null; }; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	for b in bench/*.py; do [ "$$b" = bench/__init__.py ] || $(BIN)/python $$b || exit 1; done

## shipped-model: retrain and measure the model that ships in the package (models/weights/posemask_unet/)
## with configs/shipped.cfg (its [dataset.*] roots point at ../shared/realdata/extra: edit them for your copy)
SHIPPED_CONFIG ?= configs/shipped.cfg
shipped-model: $(STAMP)
	$(BIN)/python bench/accuracy.py --config $(SHIPPED_CONFIG)
	$(BIN)/python scripts/ship_model.py --config $(SHIPPED_CONFIG)
