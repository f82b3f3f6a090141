# The Node programs the Python tests run (tests/node): the OpenTelemetry JS exporters, from package-lock.json.
# Pure JavaScript, nothing downloads binaries at install; npm's cache is reused.
NODE_TESTS_STAMP := tests/node/node_modules/.installed-$(shell cat tests/node/package.json tests/node/package-lock.json | sha256sum | cut -c1-16)

.PHONY: node-tests
node-tests: $(NODE_TESTS_STAMP)
$(NODE_TESTS_STAMP): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	@touch $@

SDK_INSTALL += node-tests
