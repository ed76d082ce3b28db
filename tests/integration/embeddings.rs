//! Keel's candle MiniLM against sentence-transformers: every fixture text (short, long, truncated at 256 word
//! pieces, non-English, code, emoji) must embed to cosine ≥ 0.999 with the reference vector, and agree on the
//! number of word pieces. The fixtures come from `tests/fixtures/minilm/make_fixtures.py`.

use keel::memory::embed::{Embedder, MAX_PIECES};
use keel::memory::vectors::dot;

use crate::common;

#[test]
fn embeddings_match_sentence_transformers_on_every_fixture() {
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::repo().join("tests/fixtures/minilm/embeddings.json")).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    // All of them: a fixture lost in a rewrite of the file is a lost check.
    assert_eq!(cases.len(), 236, "fixture texts");
    let embedder = Embedder::load(&common::models_dir().join("all-minilm-l6-v2"), "all-minilm-l6-v2").unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let ours = embedder.embed(&texts).unwrap();
    let mut worst = (1.0f32, "");
    let mut truncated = 0;
    for (case, v) in cases.iter().zip(&ours) {
        let reference: Vec<f32> = case["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(v.len(), reference.len());
        // The dot product is the cosine only for unit vectors: both norms are checked first (a vector scaled
        // wrong would otherwise pass or fail for the wrong reason).
        let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm(v) - 1.0).abs() < 1e-4, "Keel's vector for {:?} has norm {}", case["text"], norm(v));
        assert!((norm(&reference) - 1.0).abs() < 1e-4, "the reference for {:?} has norm {}", case["text"], norm(&reference));
        let cos = dot(v, &reference);
        if cos < worst.0 {
            worst = (cos, case["text"].as_str().unwrap());
        }
        let pieces = embedder.count_pieces(case["text"].as_str().unwrap());
        assert_eq!(pieces.min(MAX_PIECES) as u64, case["tokens"].as_u64().unwrap(), "word pieces of {:?}", case["text"]);
        if pieces > MAX_PIECES {
            truncated += 1;
        }
    }
    eprintln!("{} texts, {truncated} truncated; lowest cosine {:.6}", cases.len(), worst.0);
    assert!(worst.0 >= 0.999, "cosine {} for {:?}", worst.0, worst.1);
    assert!(truncated >= 20);
    // Batching and order do not change a vector.
    let alone = embedder.embed_one(texts[7]).unwrap();
    assert!((alone.iter().map(|a| a * a).sum::<f32>().sqrt() - 1.0).abs() < 1e-4);
    assert!(dot(&alone, &ours[7]) > 0.99999);
}
