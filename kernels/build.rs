//! Finds OpenBLAS to link statically for the embedding encoder's dense products
//! (`src/sgemm.rs`). Without one, Keel builds and works the same with the `gemm` crate, about a third
//! slower at embedding; the build says so, and `keel bench memory` names the kernel it ran.

use std::path::PathBuf;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(keel_openblas)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KEEL_OPENBLAS_DIR");
    println!("cargo:rerun-if-env-changed=KEEL_NO_OPENBLAS");
    if std::env::var_os("KEEL_NO_OPENBLAS").is_some() {
        return;
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let mut candidates: Vec<PathBuf> = std::env::var_os("KEEL_OPENBLAS_DIR").map(PathBuf::from).into_iter().collect();
    if os == "linux" {
        // Debian and Ubuntu's libopenblas-pthread-dev. Keel runs it with one OpenBLAS thread and splits each
        // product over its own threads (`src/sgemm.rs`). Not the serial build: Debian's is not safe to
        // call from two threads at once (it hands both the same scratch buffer), which the threaded build is.
        candidates.push(PathBuf::from(format!("/usr/lib/{arch}-linux-gnu/openblas-pthread")));
    }
    match candidates.iter().find(|dir| dir.join("libopenblas.a").is_file()) {
        Some(dir) => {
            println!("cargo:rerun-if-changed={}", dir.join("libopenblas.a").display());
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static=openblas");
            println!("cargo:rustc-cfg=keel_openblas");
        }
        None if os == "linux" => println!(
            "cargo:warning=no OpenBLAS found (libopenblas.a in {}): embeddings use the gemm crate, \
             about a third slower; install libopenblas-pthread-dev (scripts/setup.sh does) or set KEEL_OPENBLAS_DIR",
            candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" or ")
        ),
        None => {}
    }
}
