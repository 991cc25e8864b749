//! Kubernetes controller (its own issue); for now only re-exports the CRD types it will reconcile.
pub use sluice_crds as crds;
