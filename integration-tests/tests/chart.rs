//! The Helm chart: its CRDs equal the generated `crds/*.yaml` (drift check), and `scripts/chart-check`
//! (helm lint, kubeconform -strict, kubectl apply --server-side on the test API server) passes.

use std::process::Command;

use anyhow::{ensure, Context, Result};
use sluice_integration_tests::workspace_root;

#[test]
fn chart_crds_equal_the_generated_crds() -> Result<()> {
    let root = workspace_root();
    for (name, yaml) in sluice_crds::crd_files()? {
        let chart = std::fs::read_to_string(root.join("charts/sluice/crds").join(name))
            .with_context(|| format!("charts/sluice/crds/{name} is missing"))?;
        ensure!(
            chart == yaml,
            "charts/sluice/crds/{name} differs from the generated CRD: run `cargo run -p sluice-crds --bin crdgen -- --write` and copy crds/*.yaml into charts/sluice/crds/"
        );
    }
    Ok(())
}

#[test]
fn chart_lints_validates_and_applies() -> Result<()> {
    for var in [
        "HELM_BIN",
        "KUBECONFORM_BIN",
        "KUBECTL_BIN",
        "KUBE_SCHEMAS_DIR",
        "KUBECONFIG",
    ] {
        std::env::var(var).with_context(|| format!("{var} is not set: run `scripts/services.sh start helm` and `start kube` and export their settings"))?;
    }
    let output = Command::new(workspace_root().join("scripts/chart-check")).output()?;
    ensure!(
        output.status.success(),
        "scripts/chart-check failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
