# explain_cli — everyday targets. `make demo` and `make test` work from a clean clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXPLAIN := $(VENV)/bin/explain
OUT    ?= out

.PHONY: install demo batch-demo test test-fast bench clean train-sample docs-images

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test,onnx,timm,ray]'
	touch $@

## demo: explain the shipped sample images with the shipped sample model (Kernel SHAP, top-2 classes),
## then every box the sample detector finds in one scene (a few seconds)
demo: install
	$(EXPLAIN) run sample_models/shapes_cnn.pt sample_models/images/*.png \
	    --method kernelshap --top-k 2 --seed 0 --out $(OUT)/demo
	$(EXPLAIN) run sample_models/shapes_detector.pt sample_models/det_eval/scene_05.png \
	    --method kernelshap --samples 200 --seed 0 --out $(OUT)/demo
	@echo "Demo outputs are in $(OUT)/demo/"

## batch-demo: four methods on the same images and superpixels, from a YAML config
batch-demo: install
	$(EXPLAIN) batch configs/compare.yaml
	@echo "Batch outputs and summary.json/csv are in $(OUT)/batch-demo/"

## Pattern rule for pipelines: `make -j2 out/explained/circle.json out/explained/cross_circle.json`
## explains each image once (the heatmap beside it: circle.lime.png, not to be mistaken for the
## input); make's own timestamps skip finished ones, and the JSON, the target, is moved in last,
## so an interrupted job never leaves a target that looks complete.
$(OUT)/explained/%.json: sample_models/images/%.png | install
	$(EXPLAIN) run sample_models/shapes_cnn.pt $< --method lime --quiet --out $(OUT)/explained/.tmp-$*
	mv $(OUT)/explained/.tmp-$*/$*.lime.png $(OUT)/explained/$*.lime.png
	mv $(OUT)/explained/.tmp-$*/$*.lime.json $@
	rmdir $(OUT)/explained/.tmp-$*

## test: the type check, then the whole test suite and the doctests (a few minutes on 2 cores)
test: install
	$(PY) -m mypy
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

## bench: overhead of each engine over the pure batched forward passes
bench: install
	$(PY) benchmarks/overhead.py

## docs-images: regenerate the README's pictures in docs/ from the current code
docs-images: install
	$(EXPLAIN) run sample_models/shapes_cnn.pt sample_models/images/cross_circle.png --method kernelshap \
	    --top-k 2 --seed 0 --quiet --out $(OUT)/docs
	$(EXPLAIN) run sample_models/shapes_cnn.pt sample_models/images/triangle_square.png --method rise \
	    --top-k 2 --seed 0 --quiet --out $(OUT)/docs
	$(EXPLAIN) run sample_models/shapes_cnn.pt sample_models/eval/circle_00.png --method partition \
	    --evaluate --mask sample_models/eval/circle_00.mask.png --seed 0 --quiet --out $(OUT)/docs
	cp $(OUT)/docs/cross_circle.kernelshap.png $(OUT)/docs/triangle_square.rise.png docs/
	cp $(OUT)/docs/circle_00.partition.png $(OUT)/docs/circle_00.partition.curves.png docs/

## train-sample: re-train the shipped sample model deterministically (a few minutes on CPU)
train-sample: install
	$(PY) sample_models/train_shapes.py

clean:
	rm -rf $(OUT) .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
