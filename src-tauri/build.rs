//! Points tauri-build at the one Tauri config, `tauri.conf.json` at the repository root, and rebuilds the shell
//! whenever the config or the built front end changes (so a changed UI is never shipped stale).

fn main() {
    println!("cargo:rerun-if-changed=../tauri.conf.json");
    println!("cargo:rerun-if-changed=../ui/dist");
    tauri_build::try_build(tauri_build::Attributes::new().config_path("../tauri.conf.json")).expect("tauri-build");
}
