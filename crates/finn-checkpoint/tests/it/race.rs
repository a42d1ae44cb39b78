//! race tests.
