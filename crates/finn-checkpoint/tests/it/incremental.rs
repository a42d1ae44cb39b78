//! incremental tests.
