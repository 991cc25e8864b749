//! The in-process bus backend (work in progress).
