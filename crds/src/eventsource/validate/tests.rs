//! Validation rule tests.
