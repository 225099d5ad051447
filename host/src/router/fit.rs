//! Context-window fit: before an attempt is made, the request's input
//! plus the most it may generate must fit the route's model's context
//! window (the catalogue's). A route that does not fit goes to its
//! larger-context fallback (an agent config's `context_fallback_*`),
//! recorded as the choice `context_window`; without one (or if that does
//! not fit either) the route is passed over with `token_limit_exceeded`,
//! nothing sent, and a call none of whose routes fits fails with it.
//!
//! The input is counted locally with the model's tiktoken table (text
//! and tool definitions, four tokens of overhead a message; images are
//! not counted), and only when the request's bytes could pass the window:
//! a byte-level BPE token is at least one byte, so a request of fewer
//! bytes than the window has room for always fits. The most it may
//! generate is the request's `max_tokens`, else the config's, else
//! [`DEFAULT_OUTPUT_RESERVATION`] (or the model's output limit when that
//! is lower): a request that leaves less room than that for the answer
//! would be cut short. A model whose window the catalogue does not know
//! (0, or not in the catalogue) is not checked: the request is sent as it
//! is.

use super::Route;
use crate::error::Error;
use crate::host::Host;
use crate::types::{ChatRequest, ErrorDetail, ProviderError};
use llmhost_registry::ModelEntry;
use std::borrow::Cow;

/// Tokens a message costs beyond its text (roles, separators).
const MESSAGE_OVERHEAD: u64 = 4;

/// Output tokens reserved in the context window for a request without
/// `max_tokens` (of its own or its config's), unless the model's output
/// limit is lower.
pub const DEFAULT_OUTPUT_RESERVATION: u32 = 4096;

/// The request's input counted per tokenizer, so a call counts it at
/// most once per encoding whatever its number of routes and attempts.
#[derive(Debug, Default)]
pub(super) struct InputCounts {
    counted: Vec<(String, u64)>,
}

impl InputCounts {
    /// An upper bound of the input tokens of `request` in any byte-level
    /// BPE table.
    fn most(request: &ChatRequest) -> u64 {
        let text: usize = request
            .messages
            .iter()
            .map(|m| m.text_content().len())
            .sum::<usize>()
            + tools_text(request).len();
        text as u64 + MESSAGE_OVERHEAD * request.messages.len() as u64
    }

    /// The input tokens of `request` in `encoding` (o200k_base when the
    /// host has no such table).
    fn count(&mut self, request: &ChatRequest, encoding: &str) -> u64 {
        if let Some((_, n)) = self.counted.iter().find(|(e, _)| e == encoding) {
            return *n;
        }
        let table = if crate::runtime::tokenizer::encoding(encoding).is_some() {
            encoding
        } else {
            "o200k_base"
        };
        let tokens = |text: &str| {
            crate::runtime::tokenizer::count(table, text)
                .map(u64::from)
                .unwrap_or(text.len() as u64)
        };
        let n = request
            .messages
            .iter()
            .map(|m| tokens(&m.text_content()) + MESSAGE_OVERHEAD)
            .sum::<u64>()
            + tokens(&tools_text(request));
        self.counted.push((encoding.to_owned(), n));
        n
    }
}

fn tools_text(request: &ChatRequest) -> String {
    request
        .tools
        .iter()
        .map(|t| format!("{}{}{}", t.name, t.description, t.input_schema))
        .collect()
}

/// How a request measures against one model.
struct Measure {
    input: u64,
    max_tokens: u64,
    window: u64,
}

impl Measure {
    fn fits(&self) -> bool {
        self.input + self.max_tokens <= self.window
    }
}

/// `None`: fits for sure, or the window is unknown.
fn measure(
    entry: Option<&ModelEntry>,
    route: &Route,
    request: &ChatRequest,
    counts: &mut InputCounts,
) -> Option<Measure> {
    let entry = entry.filter(|e| e.context_window > 0)?;
    let max_tokens = u64::from(request.max_tokens.or(route.defaults.max_tokens).unwrap_or(
        match entry.max_output_tokens {
            0 => DEFAULT_OUTPUT_RESERVATION,
            limit => limit.min(DEFAULT_OUTPUT_RESERVATION),
        },
    ));
    let window = u64::from(entry.context_window);
    if InputCounts::most(request) + max_tokens <= window {
        return None;
    }
    let input = counts.count(request, &entry.tokenizer);
    Some(Measure {
        input,
        max_tokens,
        window,
    })
}

/// `130,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn counts_text(m: &Measure, route: &Route) -> String {
    format!(
        "{} input + {} max_tokens > {} context window of {}/{}",
        thousands(m.input),
        thousands(m.max_tokens),
        thousands(m.window),
        route.target.provider,
        route.model
    )
}

/// `route` if the request fits its model's window, else its larger-context
/// fallback carrying the choice, else the `token_limit_exceeded` error
/// that names the counts.
pub(super) fn fit<'r>(
    host: &Host,
    route: &'r Route,
    request: &ChatRequest,
    counts: &mut InputCounts,
) -> Result<Cow<'r, Route>, Error> {
    let catalogue = host.catalogue();
    let entry = catalogue.get(&route.target.provider, &route.model);
    let Some(measured) = measure(entry, route, request, counts).filter(|m| !m.fits()) else {
        return Ok(Cow::Borrowed(route));
    };
    let too_big = counts_text(&measured, route);
    let Some(fallback) = &route.context_fallback else {
        return Err(token_limit(route, too_big));
    };
    let entry = catalogue.get(&fallback.target.provider, &fallback.model);
    if let Some(theirs) = measure(entry, fallback, request, counts).filter(|m| !m.fits()) {
        return Err(token_limit(
            route,
            format!(
                "{too_big}, and its context fallback does not fit either: {}",
                counts_text(&theirs, fallback)
            ),
        ));
    }
    let window = entry.map(|e| e.context_window).unwrap_or_default();
    let mut chosen = (**fallback).clone();
    chosen.choice = Some((
        "context_window".into(),
        format!(
            "{too_big}; {}/{} has {}",
            fallback.target.provider,
            fallback.model,
            thousands(u64::from(window))
        ),
    ));
    chosen.fallback = true;
    Ok(Cow::Owned(chosen))
}

fn token_limit(route: &Route, message: String) -> Error {
    Error::Provider {
        provider: route.target.provider.clone(),
        error: Box::new(ProviderError::TokenLimitExceeded(ErrorDetail {
            message: format!("{message}; nothing was sent"),
            status: None,
            vendor_code: None,
            request_id: None,
            retry_after_ms: None,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn counts_are_written_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4096), "4,096");
        assert_eq!(thousands(130_000), "130,000");
        assert_eq!(thousands(1_047_576), "1,047,576");
    }
}
