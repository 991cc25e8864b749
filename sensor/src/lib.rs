//! Sensors: dependency filters, parameter resolution, trigger state and the trigger kinds.
pub mod filters;
pub mod firing;
pub mod jsonpath;
pub mod params;
pub mod retry;
pub mod secrets;
pub mod state;
pub mod triggers;
