//! fencing tests.
