//! The tokenizer of a GGUF model, built from its own `tokenizer.ggml.*` metadata.
//!
//! A GGUF file carries its vocabulary, BPE merges, token types and pre-tokenizer name; this module assembles the
//! equivalent `tokenizers` BPE pipeline so that Keel gives the same ids as llama.cpp (checked against
//! llama-cpp-python fixtures in `tests/fixtures/smollm2`). `encode` matches control and user-defined tokens in the
//! text (llama.cpp's `parse_special = true`), which the chat template's own `<|im_start|>` markers need;
//! `encode_plain` does not, for message contents.


use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use super::BackendError;

/// llama.cpp's token types, as stored in `tokenizer.ggml.token_type`.
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// A tokenizer read from GGUF metadata, with the special ids the generator needs.
pub struct GgufTokenizer {
    inner: Tokenizer,
    /// The same tokenizer with control-token matching off: for text that must never produce control tokens.
    plain: Tokenizer,
    pub bos_id: Option<u32>,
    pub eos_id: u32,
    /// Tokens that end a reply: the EOS token and the chat template's end-of-turn markers.
    pub stop_ids: Vec<u32>,
    pub vocab_size: usize,
}

fn metadata<'a>(content: &'a Content, key: &str) -> Result<&'a Value, BackendError> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| BackendError::Tokenizer(format!("the GGUF file has no `{key}` metadata")))
}

fn string_array(content: &Content, key: &str) -> Result<Vec<String>, BackendError> {
    let values = metadata(content, key)?
        .to_vec()
        .map_err(|e| BackendError::Tokenizer(format!("`{key}` is not an array: {e}")))?;
    values
        .iter()
        .map(|v| v.to_string().cloned().map_err(|e| BackendError::Tokenizer(format!("`{key}`: {e}"))))
        .collect()
}

impl GgufTokenizer {
    pub fn from_gguf(content: &Content) -> Result<GgufTokenizer, BackendError> {
        let model = metadata(content, "tokenizer.ggml.model")?.to_string().map_err(tok_err)?.clone();
        if model != "gpt2" {
            return Err(BackendError::Tokenizer(format!(
                "tokenizer model `{model}` is not supported yet; Keel reads byte-level BPE (`gpt2`) tokenizers"
            )));
        }
        let pre = content
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| "default".to_owned());
        let tokens = string_array(content, "tokenizer.ggml.tokens")?;
        let merges = string_array(content, "tokenizer.ggml.merges")?;
        let token_types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v.to_vec().map_err(tok_err)?.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };

        let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| BackendError::Tokenizer(format!("malformed merge `{m}`")))
            })
            .collect::<Result<_, _>>()?;
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(tok_err)?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(&pre)?));
        inner.with_decoder(Some(ByteLevel::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&token_types)
            .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .map(|(text, _)| AddedToken::from(text.clone(), true))
            .collect();
        inner.add_special_tokens(&specials);
        let mut plain = inner.clone();
        plain.set_encode_special_tokens(true);

        let get_u32 = |key: &str| content.metadata.get(key).and_then(|v| v.to_u32().ok());
        let eos_id = get_u32("tokenizer.ggml.eos_token_id")
            .ok_or_else(|| BackendError::Tokenizer("the GGUF file names no EOS token".into()))?;
        let bos_id = get_u32("tokenizer.ggml.bos_token_id");
        let mut stop_ids = vec![eos_id];
        for marker in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>"] {
            if let Some(id) = tokens.iter().position(|t| t == marker) {
                if !stop_ids.contains(&(id as u32)) {
                    stop_ids.push(id as u32);
                }
            }
        }
        Ok(GgufTokenizer { inner, plain, bos_id, eos_id, stop_ids, vocab_size: tokens.len() })
    }

    /// Token ids for a text, with special markers in it recognised as their tokens. No BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, BackendError> {
        Ok(self.inner.encode(text, false).map_err(tok_err)?.get_ids().to_vec())
    }

    /// Token ids for text in which markers such as `<|im_start|>` are just characters (a message's content):
    /// what a user or a document writes can never become a control token and open a new turn or role.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>, BackendError> {
        Ok(self.plain.encode(text, false).map_err(tok_err)?.get_ids().to_vec())
    }

    /// Text for token ids, leaving out special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String, BackendError> {
        self.inner.decode(ids, true).map_err(tok_err)
    }

    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The bytes each token stands for, by id; `None` for control and added tokens (never produced by
    /// constrained decoding). Byte-level BPE spells bytes as characters (GPT-2's `bytes_to_unicode`); this
    /// undoes that mapping.
    pub fn token_bytes(&self) -> Vec<Option<Vec<u8>>> {
        let mut char_to_byte = std::collections::HashMap::new();
        let mut n = 0u32;
        for b in 0u32..256 {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            let c = if printable {
                b
            } else {
                n += 1;
                255 + n
            };
            char_to_byte.insert(char::from_u32(c).expect("a valid char"), b as u8);
        }
        let added = self.inner.get_added_tokens_decoder();
        (0..self.vocab_size as u32)
            .map(|id| {
                if added.contains_key(&id) {
                    return None;
                }
                let text = self.inner.id_to_token(id)?;
                text.chars().map(|c| char_to_byte.get(&c).copied()).collect()
            })
            .collect()
    }
}

/// The pre-tokenizer llama.cpp uses for a `tokenizer.ggml.pre` name.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, BackendError> {
    let byte_level = ByteLevel::new(false, true, true);
    Ok(match pre {
        // GPT-2's regex over bytes.
        "default" | "gpt2" | "gpt-2" => byte_level.into(),
        // llama.cpp splits every digit on its own (`\p{N}`) before the GPT-2 regex for these.
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        }
        other => {
            return Err(BackendError::Tokenizer(format!(
                "pre-tokenizer `{other}` is not supported yet (supported: default, gpt2, smollm, starcoder, refact)"
            )))
        }
    })
}

fn tok_err(e: impl std::fmt::Display) -> BackendError {
    BackendError::Tokenizer(e.to_string())
}
