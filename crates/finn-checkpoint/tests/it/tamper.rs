//! tamper tests.
