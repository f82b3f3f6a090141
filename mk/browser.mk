# The web console's browser tests drive Debian's Chromium through Debian's ChromeDriver (selenium is told
# their paths, so nothing downloads a browser or a driver). apt-get installs them once; apt's cache is reused.
CHROMEDRIVER := /usr/bin/chromedriver
APT_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: browser
browser: $(CHROMEDRIVER)
$(CHROMEDRIVER):
	@command -v apt-get >/dev/null || { echo "the console's browser tests need chromium and chromium-driver (Debian packages)"; exit 1; }
	$(APT_SUDO) apt-get install -y -q --no-install-recommends chromium chromium-driver \
	  || { $(APT_SUDO) apt-get update -q && $(APT_SUDO) apt-get install -y -q --no-install-recommends chromium chromium-driver; }

SDK_INSTALL += browser
