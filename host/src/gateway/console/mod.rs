//! The web console at `/ui`: a single-page app of plain JavaScript modules
//! and CSS, embedded in the binary, that drives the admin API
//! (`/admin/v1/*`) with a session cookie from `/ui/api/session`.
//!
//! Nothing is fetched from elsewhere: no CDN, no fonts, no build step. Every
//! answer carries a strict Content-Security-Policy (scripts and styles
//! from this origin only, no inline script, no framing), so text the
//! console shows cannot become script even if it slipped past the app's
//! own escaping.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::OnceLock;

/// What the console's pages may load and where they may be shown.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// An embedded file: its name under `/ui/assets/`, its type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page every console address serves; the app routes by the hash.
const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("charts.js", JS),
    asset!("signin.js", JS),
    asset!("overview.js", JS),
    asset!("agents.js", JS),
    asset!("config_form.js", JS),
    asset!("keys.js", JS),
    asset!("playground.js", JS),
    asset!("plugins.js", JS),
];

/// The console's routes, to merge into the gateway's.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/assets/{file}", get(asset))
}

async fn index(request: HeaderMap) -> Response {
    serve(&INDEX, &request)
}

async fn asset(Path(file): Path<String>, request: HeaderMap) -> Response {
    match ASSETS.iter().find(|asset| asset.name == file) {
        Some(asset) => serve(asset, &request),
        None => with_policy(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such console asset\n",
            )
                .into_response(),
        ),
    }
}

/// `asset`, or 304 when the browser's copy is current. The names carry no
/// version, so browsers revalidate every time (`no-cache`) against the
/// content hash.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = etag_of(asset);
    let current = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    let mut response = if current {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    with_policy(response)
}

/// The quoted ETag of `asset`: a prefix of its content's blake3 hash,
/// computed once per asset.
fn etag_of(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        std::iter::once(&INDEX)
            .chain(ASSETS)
            .map(|asset| {
                let hash = blake3::hash(asset.body).to_hex();
                (asset.name, format!("\"{}\"", &hash[..16]))
            })
            .collect()
    });
    tags.iter()
        .find(|(name, _)| *name == asset.name)
        .map_or("\"\"", |(_, tag)| tag.as_str())
}

fn with_policy(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_app_imports_is_served() {
        for asset in std::iter::once(&INDEX).chain(ASSETS) {
            let text = std::str::from_utf8(asset.body).unwrap_or_default();
            for line in text.lines() {
                let Some(start) = line.find("from './") else {
                    continue;
                };
                let rest = &line[start + "from './".len()..];
                let imported = rest.split('\'').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|a| a.name == imported),
                    "{} imports {imported}, which is not served",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn no_asset_writes_markup_from_strings() {
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(asset.body).unwrap_or_default();
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "localStorage",
                "sessionStorage",
            ] {
                assert!(
                    !text.contains(banned),
                    "{} uses {banned}: text goes through textContent, secrets stay in memory",
                    asset.name
                );
            }
        }
    }
}
