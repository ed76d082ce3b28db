//! Keel's integration tests, built as one binary (ripgrep's layout): each module drives the real stack through
//! `keel::App` or the `keel` binary, with a temporary data dir per test.

mod agent_regression;
mod big_inputs;
mod bindings;
mod cli;
mod cli_contract;
mod llama_server;
mod local;
mod mcp;
mod memory;
mod memory_crash;
mod models_manager;
mod common;
mod control;
mod embeddings;
mod engine;
mod eval_run;
mod fault_matrix;
mod full_disk;
mod guard;
mod guard_eval;
mod keyring;
mod orchestration;
mod reference;
mod remote;
mod run_crash;
mod retrieval_eval;
mod routed;
mod routing;
mod store;
mod tidy;
mod tool_calls;
mod torture;
mod tools_cli;
