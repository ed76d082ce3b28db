//! Tests of the remote backend's pure parts: errors, backoff, schemas.

use super::*;

#[test]
fn api_key_debug_shows_no_part_of_the_key() {
    let key = ApiKey::new("sk-test-0123456789");
    assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
    let config = RemoteConfig {
        name: "x".into(),
        base_url: "http://127.0.0.1:1/v1".into(),
        model: "m".into(),
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        max_retries: 0,
        context_window: 2048,
        key: Some(key),
        key_problem: None,
    };
    assert!(!format!("{config:?}").contains("0123456789"));
}

#[test]
fn retry_after_reads_seconds_and_dates() {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
    assert_eq!(retry_after_ms(&h), Some(2000));
    let later = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc2822();
    h.insert(reqwest::header::RETRY_AFTER, later.parse().unwrap());
    let ms = retry_after_ms(&h).unwrap();
    assert!((3000..=5000).contains(&ms), "{ms}");
    h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
    assert_eq!(retry_after_ms(&h), None);
}

#[test]
fn backoff_stays_under_its_cap_and_honours_retry_after() {
    for attempt in 1..12 {
        assert!(backoff(attempt, None) <= Duration::from_millis(4000));
    }
    assert_eq!(backoff(1, Some(1500)), Duration::from_millis(1500));
}

#[test]
fn schemas_sent_for_grammars_lose_only_huge_bounds() {
    let schema = json!({"anyOf": [{"type": "object", "properties": {
        "content": {"type": "string", "maxLength": 1048576},
        "path": {"type": "string", "maxLength": 100, "minLength": 1}}}]});
    let sent = grammar_friendly(&schema);
    assert_eq!(sent["anyOf"][0]["properties"]["content"], json!({"type": "string"}));
    assert_eq!(sent["anyOf"][0]["properties"]["path"], schema["anyOf"][0]["properties"]["path"]);
}

#[test]
fn error_bodies_become_one_line() {
    let body: Value = serde_json::from_str(r#"{"error": {"message": "The model `x` does not exist", "type": "invalid_request_error"}}"#).unwrap();
    assert_eq!(error_message(&body), "The model `x` does not exist");
    assert_eq!(error_message(&json!({"detail": "Not Found"})), "Not Found");
}
