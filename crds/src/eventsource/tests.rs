//! Parsing and round-trip tests.
