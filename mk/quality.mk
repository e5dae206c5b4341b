# Online-learning quality: fixed-seed measurements through the real components, the trainer against
# the TensorFlow Kafka tutorial's loop and an offline model. Writes benchmarks/results/quality-<date>-<rev>.{json,png}.
QUALITY_ARGS ?=

.PHONY: quality quality-quick chromium

quality: venv ## online-learning quality measurements (~30 min on 2 cores): benchmarks/results/quality-*.json/png
	$(PY) -m benchmarks.quality $(QUALITY_ARGS)

quality-quick: venv ## the quality measurements on smaller streams (~10 min), same JSON shape
	$(PY) -m benchmarks.quality --quick $(QUALITY_ARGS)

chromium: ## install Debian's chromium and chromium-driver for the live-page test (it skips without them)
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "chromium is installed"; else \
	  echo "chromium: installing chromium and chromium-driver from Debian"; mk/apt-install.sh chromium chromium-driver; fi
