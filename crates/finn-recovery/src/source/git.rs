//! The git archive source (being written).
