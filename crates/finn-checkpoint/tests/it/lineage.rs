//! lineage tests.
