//! Who may use the admin API: the master key, an admin token, or a
//! console session made from either.
//!
//! A session is a random id in an `HttpOnly; SameSite=Strict` cookie,
//! kept in memory (blake3 of it, so a memory dump of the table does not
//! hand out sessions) with the admin it belongs to and a CSRF token. A
//! request that changes anything with the cookie must carry the CSRF token
//! in `x-csrf-token`: SameSite keeps other sites' requests from carrying
//! the cookie, and the token keeps a page that is not the console's from
//! acting with it even where SameSite is not honoured. A session made from
//! an admin token ends when the token is revoked.
//!
//! With shared state ([`crate::shared`]) sessions are kept in Redis
//! instead, so every replica honours a session signed in through any; while
//! Redis is unavailable, sign-in and session requests answer
//! `shared_state_unavailable` (the master key and admin tokens still work).

use super::{AdminError, AdminResult, parse};
use crate::error::ErrorKind;
use crate::gateway::server::{Shared, presented_key};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "llmhost_session";
/// The header carrying a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts after sign-in.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// An authenticated administrator.
#[derive(Debug, Clone)]
pub struct Admin {
    /// `master`, or the admin token's name.
    pub name: String,
    /// Whether this is the master key (some routes are for it alone).
    pub master: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct Session {
    admin: Admin,
    /// The admin token's hash, checked again on every use.
    token_hash: Option<[u8; 32]>,
    csrf: String,
    /// In-process only: a shared session lives as long as its Redis key.
    #[serde(skip, default = "Instant::now")]
    expires: Instant,
}

/// An admin as a shared session stores it.
#[derive(Serialize, Deserialize)]
struct StoredAdmin {
    name: String,
    master: bool,
}

impl Serialize for Admin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredAdmin {
            name: self.name.clone(),
            master: self.master,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Admin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let StoredAdmin { name, master } = StoredAdmin::deserialize(deserializer)?;
        Ok(Admin { name, master })
    }
}

/// The console's sessions, in memory or in Redis.
#[derive(Default)]
pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Session>>,
    shared: Option<Arc<crate::shared::Redis>>,
}

fn random_token() -> Result<String, AdminError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| {
        AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Internal,
            format!("cannot draw random bytes: {err}"),
        )
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn id_hash(id: &str) -> [u8; 32] {
    *blake3::hash(id.as_bytes()).as_bytes()
}

impl Sessions {
    /// Sessions in `shared` (Redis) when given, else in this process.
    pub fn new(shared: Option<Arc<crate::shared::Redis>>) -> Self {
        Self {
            table: Mutex::default(),
            shared,
        }
    }

    async fn open(
        &self,
        admin: Admin,
        token_hash: Option<[u8; 32]>,
    ) -> AdminResult<(String, String)> {
        let id = random_token()?;
        let csrf = random_token()?;
        if let Some(redis) = &self.shared {
            let session = Session {
                admin,
                token_hash,
                csrf: csrf.clone(),
                expires: Instant::now(),
            };
            let value = serde_json::to_string(&session)
                .map_err(|err| AdminError::from(crate::Error::Internal(err.to_string())))?;
            crate::shared::sessions::put(redis, &id_hash(&id), value, SESSION_TTL).await?;
            return Ok((id, csrf));
        }
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        table.retain(|_, s| s.expires > now);
        if table.len() >= MAX_SESSIONS
            && let Some(oldest) = table.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            table.remove(&oldest);
        }
        table.insert(
            id_hash(&id),
            Session {
                admin,
                token_hash,
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Ok((id, csrf))
    }

    async fn get(&self, id: &str) -> AdminResult<Option<Session>> {
        if let Some(redis) = &self.shared {
            let stored = crate::shared::sessions::get(redis, &id_hash(id)).await?;
            // A value that does not parse is no session.
            return Ok(stored.and_then(|text| serde_json::from_str(&text).ok()));
        }
        Ok(self.get_local(id))
    }

    fn get_local(&self, id: &str) -> Option<Session> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let key = id_hash(id);
        match table.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                table.remove(&key);
                None
            }
            None => None,
        }
    }

    async fn close(&self, id: &str) -> AdminResult<()> {
        if let Some(redis) = &self.shared {
            crate::shared::sessions::delete(redis, &id_hash(id)).await?;
            return Ok(());
        }
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id_hash(id));
        Ok(())
    }
}

/// The value of cookie `name`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn unauthorized(message: &str) -> AdminError {
    AdminError::new(StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized, message)
}

fn forbidden(message: &str) -> AdminError {
    AdminError::new(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
}

/// Compares two strings in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

impl Shared {
    /// The admin a bearer credential belongs to, and the admin token's
    /// hash when it is one.
    async fn admin_of_key(&self, key: &str) -> AdminResult<Option<(Admin, Option<[u8; 32]>)>> {
        // blake3's `Hash` compares in constant time.
        if self
            .master
            .is_some_and(|master| blake3::hash(key.as_bytes()) == master)
        {
            let admin = Admin {
                name: "master".to_owned(),
                master: true,
            };
            return Ok(Some((admin, None)));
        }
        let token = self.admin_tokens.authenticate(key).await?;
        Ok(token.map(|token| {
            let admin = Admin {
                name: token.name,
                master: false,
            };
            (admin, Some(*blake3::hash(key.as_bytes()).as_bytes()))
        }))
    }

    /// Who is making an admin request, refusing it when no one or a
    /// cookie without its CSRF token.
    async fn admin(&self, parts: &Parts) -> AdminResult<Admin> {
        if let Some(key) = presented_key(&parts.headers) {
            return match self.admin_of_key(key).await? {
                Some((admin, _)) => Ok(admin),
                None => Err(unauthorized("invalid admin credentials")),
            };
        }
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(unauthorized(
                "send `Authorization: Bearer TOKEN` with the master key or an admin token",
            ));
        };
        let Some(session) = self.sessions.get(id).await? else {
            return Err(unauthorized("the session has ended; sign in again"));
        };
        if let Some(hash) = session.token_hash
            && self
                .service
                .store()
                .live_admin_token_by_hash(hash)
                .await?
                .is_none()
        {
            self.sessions.close(id).await?;
            return Err(unauthorized("the admin token of this session was revoked"));
        }
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !same(sent, &session.csrf) {
                return Err(forbidden(&format!(
                    "CSRF check failed: a change made with the session cookie needs the \
                     session's `{CSRF_HEADER}` header"
                )));
            }
        }
        Ok(session.admin)
    }
}

impl FromRequestParts<Arc<Shared>> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> AdminResult<Self> {
        shared.admin(parts).await
    }
}

/// The master key alone: admin tokens may not mint or revoke tokens.
pub(super) fn require_master(admin: &Admin) -> AdminResult<()> {
    if admin.master {
        Ok(())
    } else {
        Err(forbidden("only the master key manages admin tokens"))
    }
}

// ----- the console's sign-in -----

#[derive(Deserialize, ToSchema)]
struct SignIn {
    /// The master key or an admin token.
    token: String,
}

#[derive(Serialize, ToSchema)]
struct SessionInfo {
    /// Send as `x-csrf-token` with every change.
    csrf_token: String,
    /// `master` or the admin token's name.
    admin: String,
}

fn session_cookie(value: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /ui/api/session`: signs in with a token.
pub(crate) async fn sign_in(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let result: AdminResult<Response> = async {
        let SignIn { token } = parse(&body)?;
        let Some((admin, token_hash)) = shared.admin_of_key(token.trim()).await? else {
            tracing::warn!(target: "llmhost::access", "console sign-in refused");
            return Err(unauthorized(
                "that is not the master key or a live admin token",
            ));
        };
        let (id, csrf) = shared.sessions.open(admin.clone(), token_hash).await?;
        tracing::info!(target: "llmhost::access", admin = %admin.name, "console sign-in");
        let mut response = Json(SessionInfo {
            csrf_token: csrf,
            admin: admin.name,
        })
        .into_response();
        response.headers_mut().insert(
            header::SET_COOKIE,
            session_cookie(&id, SESSION_TTL.as_secs()),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /ui/api/session`: the session's CSRF token, for a reloaded page.
pub(crate) async fn current(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let session = match cookie(&headers, SESSION_COOKIE) {
        Some(id) => shared.sessions.get(id).await,
        None => Ok(None),
    };
    match session {
        Err(err) => err.into_response(),
        Ok(Some(session)) => {
            let mut response = Json(SessionInfo {
                csrf_token: session.csrf,
                admin: session.admin.name,
            })
            .into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Ok(None) => unauthorized("not signed in").into_response(),
    }
}

/// `DELETE /ui/api/session`: signs out.
pub(crate) async fn sign_out(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Err(err) = shared.sessions.close(id).await
    {
        return err.into_response();
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; llmhost_session_x=2; llmhost_session=abc"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[tokio::test]
    async fn sessions_end() {
        let sessions = Sessions::default();
        let admin = Admin {
            name: "ops".into(),
            master: false,
        };
        let (id, csrf) = sessions.open(admin, None).await.unwrap();
        assert_ne!(id, csrf);
        let got = sessions.get(&id).await.unwrap();
        assert_eq!(got.map(|s| s.csrf), Some(csrf));
        sessions.close(&id).await.unwrap();
        assert!(sessions.get(&id).await.unwrap().is_none());
    }
}
