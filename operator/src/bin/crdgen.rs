//! Prints the CRDs as YAML (`crdgen`), or writes them into a folder
//! (`crdgen DIR`, what `make crds` runs).
#![forbid(unsafe_code)]

fn main() -> std::io::Result<()> {
    match std::env::args_os().nth(1) {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            for (file, crd) in innoxide_operator::crd::all() {
                std::fs::write(dir.join(file), innoxide_operator::crd::to_yaml(&crd))?;
            }
        }
        None => {
            for (_, crd) in innoxide_operator::crd::all() {
                print!("---\n{}", innoxide_operator::crd::to_yaml(&crd));
            }
        }
    }
    Ok(())
}
