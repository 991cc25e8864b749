//! Prints the EventSource, Sensor and EventBus CRDs as multi-document YAML, or with `--write [DIR]`
//! writes one file per kind (default: this crate's directory, where they are checked in).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("crdgen: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    match args {
        [] => {
            let yaml = sluice_crds::crd_yaml().map_err(|e| format!("failed to serialize the CRDs: {e}"))?;
            print!("{yaml}");
            Ok(())
        }
        [flag, rest @ ..] if flag == "--write" && rest.len() <= 1 => {
            let dir = rest
                .first()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
            let files = sluice_crds::crd_files().map_err(|e| format!("failed to serialize the CRDs: {e}"))?;
            for (name, yaml) in files {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
        _ => Err("usage: crdgen [--write [DIR]]".to_string()),
    }
}
