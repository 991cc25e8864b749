//! Code several source kinds share (no kind imports a sibling kind; what two need lives here).

pub mod body;
