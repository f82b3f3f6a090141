# The Rust SDK (sdk/rust): its tests built once, into the cargo target dir sdk/rust/cargo.sh names
# (outside the checkout: the bundled librdkafka is large and slow to build). Needs cargo on the PATH.
.PHONY: sdk-rust
sdk-rust:
	sdk/rust/cargo.sh build --tests --locked

SDK_INSTALL += sdk-rust
