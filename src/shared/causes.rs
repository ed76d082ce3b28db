//! An error and its causes on one line. reqwest's own message ("error sending request") says little alone, so
//! the HTTP tool, the remote backend and the model download all report the chain below it.

use std::error::Error;

/// `error`'s message followed by each cause that adds something (a cause whose text the line already holds is
/// left out), joined by ": ".
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(&'static str, #[source] Option<Box<E>>);

    #[test]
    fn causes_are_joined_and_repeats_left_out() {
        let inner = E("connection refused", None);
        let middle = E("error sending request: connection refused", Some(Box::new(inner)));
        let outer = E("request to http://127.0.0.1:9/v1 failed", Some(Box::new(middle)));
        assert_eq!(chain(&outer), "request to http://127.0.0.1:9/v1 failed: error sending request: connection refused");
        assert_eq!(chain(&E("alone", None)), "alone");
    }
}
