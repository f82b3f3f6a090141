# The TypeScript SDK (sdk/typescript): node_modules from package-lock.json (npm ci: registry packages only,
# none downloads a binary at install), then dist/ compiled by tsc. npm ci re-runs only when the manifest
# or the lock changes, tsc only when a source does (both stamps live in node_modules, which npm ci empties).
TS_SDK := sdk/typescript
TS_SDK_MODULES := $(TS_SDK)/node_modules/.trajstream-installed
TS_SDK_BUILT := $(TS_SDK)/node_modules/.trajstream-built
TS_SDK_SOURCES := $(TS_SDK)/tsconfig.json \
	$(wildcard $(TS_SDK)/src/*.ts $(TS_SDK)/test/*.ts $(TS_SDK)/test-e2e/*.ts $(TS_SDK)/test-parity/*.ts $(TS_SDK)/scripts/*.mjs)

.PHONY: sdk-typescript
sdk-typescript: $(TS_SDK_BUILT)

$(TS_SDK_MODULES): $(TS_SDK)/package.json $(TS_SDK)/package-lock.json
	cd $(TS_SDK) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(TS_SDK_BUILT): $(TS_SDK_MODULES) $(TS_SDK_SOURCES)
	cd $(TS_SDK) && npm run --silent build
	@touch $@

SDK_INSTALL += sdk-typescript
