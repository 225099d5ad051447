//! Token counting with OpenAI's `o200k_base` encoding, which the current
//! OpenAI chat models use.

use tiktoken_rs::o200k_base_singleton;

/// The number of `o200k_base` tokens in `text`.
pub(crate) fn count(text: &str) -> usize {
    o200k_base_singleton().encode_ordinary(text).len()
}

/// `text` cut to its first `max` tokens, or `None` if it already fits.
pub(crate) fn truncate(text: &str, max: usize) -> Option<String> {
    let bpe = o200k_base_singleton();
    let tokens = bpe.encode_ordinary(text);
    if tokens.len() <= max {
        return None;
    }
    let bytes = bpe.decode_bytes(&tokens[..max]).unwrap_or_default();
    // The cut can fall inside a multi-byte character; drop the partial one.
    let valid = match std::str::from_utf8(&bytes) {
        Ok(s) => s,
        Err(err) => std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default(),
    };
    Some(valid.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_at_token_boundaries() {
        let text = "Hello from the llmhost simulator.";
        let n = count(text);
        assert!(n > 3);
        assert_eq!(truncate(text, n), None);
        let cut = truncate(text, 2).expect("cut");
        assert_eq!(count(&cut), 2);
        assert!(text.starts_with(&cut));
    }

    #[test]
    fn never_splits_a_character() {
        let text = "日本語のテキストです";
        for max in 0..count(text) {
            let cut = truncate(text, max).expect("cut");
            assert!(text.starts_with(&cut));
        }
    }
}
