//! Arithmetic routed by code (`interface::route`), through `keel ask` in auto mode on the embedded model: the
//! calculator is chosen by the grammar, not the model (a `Routed` event, then the call), the answer states the
//! calculator's result, and the terminal shows the answer, not the JSON action the model wrote.

use super::common::{keel, stderr, stdout};

fn ask(home: &std::path::Path, question: &str) -> (String, serde_json::Value) {
    let text = keel(home).args(["ask", question]).output().unwrap();
    assert!(text.status.success(), "{}", stderr(&text));
    let runs = keel(home).args(["runs", "list", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_str(&stdout(&runs)).unwrap();
    let id = list.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).max().unwrap();
    let show = keel(home).args(["runs", "show", &id.to_string(), "--json"]).output().unwrap();
    (stdout(&text), serde_json::from_str(&stdout(&show)).unwrap())
}

#[test]
fn arithmetic_in_words_is_routed_to_the_calculator_and_answered_with_its_result() {
    let home = tempfile::tempdir().unwrap();
    for (question, want) in [("What is 12345 multiplied by 6789?", "83810205"), ("What is 17% of 2340?", "397.8")] {
        let (shown, run) = ask(home.path(), question);
        assert!(shown.contains(want), "{question}: the answer shown lacks {want}: {shown}");
        assert!(!shown.contains("{\"answer\""), "{question}: the terminal shows the raw action: {shown}");
        let kinds: Vec<&str> = run["events"].as_array().unwrap().iter().map(|e| e["event"]["kind"].as_str().unwrap()).collect();
        let routed = kinds.iter().position(|k| *k == "Routed").unwrap_or_else(|| panic!("{question}: not routed: {kinds:?}"));
        let called = kinds.iter().position(|k| *k == "ToolCalled").unwrap_or_else(|| panic!("{question}: no call: {kinds:?}"));
        let first_model = kinds.iter().position(|k| *k == "ModelCalled").unwrap_or(usize::MAX);
        assert!(routed < called && called < first_model, "{question}: the call was not code's, before the model: {kinds:?}");
        assert_eq!(run["run"]["status"], "answered", "{question}");
    }
}
