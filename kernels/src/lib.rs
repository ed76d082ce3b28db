//! Keel's numeric kernels, in a crate of their own so that they build optimised and without overflow checks
//! even in the dev profile that Keel's binaries run from (see the workspace `Cargo.toml`): index arithmetic in
//! a register-tiled loop is checked on every step otherwise, and the tiles no longer fit in registers.
//!
//! It depends on nothing of Keel's. `keel::memory` uses `sgemm` and `int8` (the embedding encoder and the
//! vector prefilter); `keel::llm::engine` uses `quant` and `llama` (the embedded chat model's forward pass).

pub mod int8;
pub mod llama;
pub mod quant;
pub mod sgemm;
