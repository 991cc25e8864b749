//! Sensors: dependency filters, parameter resolution, trigger state and the trigger kinds.
pub mod filters;
pub mod jsonpath;
