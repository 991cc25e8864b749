//! Trigger `conditions` expressions.
