//! `llmhost admin-tokens …`: the credentials of the admin API and the web
//! console, made by whoever can open the database.

use super::output::{Fail, print_json};
use crate::Settings;
use crate::service::{AdminToken, AdminTokens};
use crate::store::Store;
use clap::Subcommand;
use secrecy::ExposeSecret;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum AdminTokensCommand {
    /// Create a token and print it. It is shown this once: llmhost keeps
    /// only its hash and first characters. Sign in to the console
    /// (`/ui`) with it, or send it as `Authorization: Bearer TOKEN` to
    /// `/admin/v1/`.
    Create {
        /// Letters, digits, `-`, `_` and `.`, at most 64; unique.
        name: String,
    },
    /// List the tokens with their hints and status; never the tokens.
    List,
    /// Revoke a token: refused at once, and its console sessions end.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn line(token: &AdminToken) -> String {
    format!(
        "{:<20} {:<24} created {}{}",
        token.name,
        token.hint,
        token.created_at,
        token
            .revoked_at
            .as_ref()
            .map(|at| format!(", revoked {at}"))
            .unwrap_or_default()
    )
}

pub async fn run(settings: &Settings, command: AdminTokensCommand, json: bool) -> Result<(), Fail> {
    let tokens = AdminTokens::new(Store::open(&settings.database).await?);
    match command {
        AdminTokensCommand::Create { name } => {
            let (token, secret) = tokens.create(&name).await?;
            if json {
                print_json(&json!({"admin_token": token, "token": secret.expose_secret()}));
            } else {
                outln!("{}", secret.expose_secret());
                eprintln!(
                    "admin token `{}` created; it is shown only now. Sign in at \
                     http://HOST:PORT/ui or send it as `Authorization: Bearer TOKEN`.",
                    token.name
                );
            }
        }
        AdminTokensCommand::List => {
            let list = tokens.list().await?;
            if json {
                print_json(&json!({"admin_tokens": list}));
            } else if list.is_empty() {
                eprintln!("no admin tokens (create one with `llmhost admin-tokens create NAME`)");
            } else {
                for token in &list {
                    outln!("{}", line(token));
                }
            }
        }
        AdminTokensCommand::Revoke { name } => {
            let token = tokens.revoke(&name).await?;
            if json {
                print_json(&json!({"admin_token": token}));
            } else {
                outln!("{}", line(&token));
            }
        }
    }
    Ok(())
}
