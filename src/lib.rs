//! Cross-crate integration tests live in tests/; benchmarks in benches/.
