//! Evaluation and benchmarks: measured figures with their peers side by side, never asserted in timed tests.

pub mod agent;
pub mod bench;
pub mod guard;
pub mod memory_bench;
pub mod retrieval;
pub mod overhead;
pub mod remote_bench;
pub mod tool_calls;
