//! What several layers share, and nothing else: a leaf module that uses no other module of Keel's, so any layer
//! may use it without making a loop.
//!
//! - [`backoff`]: the one retry policy (exponential backoff with full jitter, honouring `Retry-After`);
//! - [`causes`]: an error and its causes on one line;
//! - [`io`]: what an I/O error means for the user (a full disk, a folder that cannot take writes).

pub mod backoff;
pub mod causes;
pub mod io;
