//! Offline checks of a Sensor.
