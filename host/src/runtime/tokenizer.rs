//! The `tokenizer` import, served natively with tiktoken. Tables load once
//! per process, on first use of each encoding.

use tiktoken_rs::CoreBPE;

/// The tiktoken table for an encoding name, if the host has it.
pub fn encoding(name: &str) -> Option<&'static CoreBPE> {
    Some(match name {
        "o200k_base" => tiktoken_rs::o200k_base_singleton(),
        "cl100k_base" => tiktoken_rs::cl100k_base_singleton(),
        "p50k_base" => tiktoken_rs::p50k_base_singleton(),
        "r50k_base" => tiktoken_rs::r50k_base_singleton(),
        _ => return None,
    })
}

/// The host has no table of this name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownEncoding;

/// Tokens in `text`; special-token markers count as ordinary text.
pub fn count(name: &str, text: &str) -> Result<u32, UnknownEncoding> {
    let bpe = encoding(name).ok_or(UnknownEncoding)?;
    Ok(u32::try_from(bpe.encode_ordinary(text).len()).unwrap_or(u32::MAX))
}
