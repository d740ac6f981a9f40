//! What the `chat`, `openai` and `ollama` examples share: MARIE on the embedded defaults
//! (in-memory stores, unless `MARIE_DATABASE_URL` names a SQL one or `MARIE_FILES_DIR` a
//! directory for uploaded files) with the provider the example picked and the demo tools of
//! `tools.rs`, behind the chat page of `web.rs`, and graceful shutdown. Included by each
//! example with `#[path]`, beside `web.rs` and `tools.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use marie_axum::Marie;
use marie_core::{Budget, LlmProvider, OnBusy, TitlePolicy};

use crate::{store, tools, web};

/// Serves the chat page and MARIE with `provider` on `MARIE_ADDR` (default
/// 127.0.0.1:3000) until Ctrl-C or SIGTERM, then lets running answers finish for 5 s.
/// Conversations are named with `titles` unless `MARIE_TITLES` says otherwise.
///
/// Prints `MARIE {name} example listening on http://{addr}` once it accepts connections.
pub(crate) async fn serve(
    name: &str,
    provider: Arc<dyn LlmProvider>,
    titles: TitlePolicy,
) -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = address_from_env("MARIE_ADDR", "127.0.0.1:3000")?;

    let (mode, authenticator) = web::auth_from_env();

    tracing::info!(
        provider = provider.name(),
        "answers come from this provider"
    );
    let listener = web::listen(addr, "MARIE_ADDR").await?;
    let local = listener.local_addr()?;
    // One SQL store, when MARIE_DATABASE_URL names one, for conversations and files alike.
    let sql = store::sql_from_env().await?;
    let mut builder = Marie::builder()
        .authenticator(authenticator)
        .store(store::from_env(sql.as_ref()))
        .files(store::files_from_env(sql.as_ref()).await?)
        .provider(provider)
        .config(config_from_env(titles)?)
        .allowed_origins(web::allowed_origins(mode.is_dev(), local));
    if tools::enabled() {
        builder = builder
            .tool(tools::calculate())
            .tool(tools::send_email(tools::Outbox::default()));
    }
    if let Some(budget) = budget_from_env()? {
        tracing::info!(%budget, "every user has a token budget");
        builder = builder.budget(budget);
    }
    let (layer, handle) = builder.build()?;

    let app = web::page_routes(mode)
        // The SSE fallback, `/healthz` and `/readyz`.
        .merge(handle.http_routes())
        .layer(layer);

    // Tests and scripts wait for this exact line.
    println!("MARIE {name} example listening on http://{local}");

    let shutdown_handle = handle.clone();
    axum::serve(marie_axum::nodelay(listener), app)
        .with_graceful_shutdown(async move {
            web::shutdown_signal().await;
            tracing::info!("shutting down: finishing running answers");
            shutdown_handle.shutdown(Duration::from_secs(5)).await;
        })
        .await?;
    Ok(())
}

/// `MARIE_TOKEN_BUDGET`, e.g. `50000/day`: the same token budget for every user.
pub(crate) fn budget_from_env() -> Result<Option<Budget>, web::Words> {
    let Ok(text) = std::env::var("MARIE_TOKEN_BUDGET") else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|e| web::Words(format!("MARIE_TOKEN_BUDGET={text:?}: {e}")))
}

/// The configuration, with `MARIE_APPROVAL_TIMEOUT_SECS` (how long a tool call waits for
/// approval; default 600) and `MARIE_ON_BUSY` (`reject`, `enqueue` or `interrupt`: what a
/// send does while an answer runs, when the client does not say; default `reject`),
/// `MARIE_MAX_FILE_BYTES` (the largest upload; default 10 MiB) and `MARIE_FILE_QUOTA_BYTES`
/// (what one user's files may take; default 100 MiB), `MARIE_MODELS` (the models a
/// conversation may pick, comma-separated, the first the default; unset: no choice),
/// `MARIE_MAX_SYSTEM_PROMPT_CHARS` (how long a conversation's own system prompt may be;
/// default 4000, 0: none), `MARIE_ASSISTANTS` (`tools::assistants`) and `MARIE_TITLES` (`off`, `first_words` or `ask_model`; default
/// `titles`).
fn config_from_env(titles: TitlePolicy) -> Result<marie_axum::MarieConfig, web::Words> {
    let mut config = marie_axum::MarieConfig::default();
    config.engine = config
        .engine
        .titles(titles_from_env(titles)?)
        .max_system_prompt_chars(4_000)
        .assistants(tools::assistants()?);
    if let Ok(text) = std::env::var("MARIE_MODELS") {
        let models: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        config.engine = config.engine.models(models);
    }
    if let Ok(text) = std::env::var("MARIE_MAX_SYSTEM_PROMPT_CHARS") {
        let chars: usize = text.trim().parse().map_err(|_| {
            web::Words(format!(
                "MARIE_MAX_SYSTEM_PROMPT_CHARS={text:?} is not a number of characters"
            ))
        })?;
        config.engine = config.engine.max_system_prompt_chars(chars);
    }
    if let Ok(text) = std::env::var("MARIE_ON_BUSY") {
        let on_busy = match text.trim() {
            "reject" => OnBusy::Reject,
            "enqueue" => OnBusy::Enqueue,
            "interrupt" => OnBusy::Interrupt,
            _ => {
                return Err(web::Words(format!(
                    "MARIE_ON_BUSY={text:?}: say reject, enqueue or interrupt"
                )));
            }
        };
        config.engine = config.engine.on_busy(on_busy);
    }
    if let Ok(text) = std::env::var("MARIE_APPROVAL_TIMEOUT_SECS") {
        let secs: u64 = text.trim().parse().map_err(|_| {
            web::Words(format!(
                "MARIE_APPROVAL_TIMEOUT_SECS={text:?} is not a number of seconds"
            ))
        })?;
        config.engine = config.engine.approval_timeout(Duration::from_secs(secs));
    }
    if let Ok(text) = std::env::var("MARIE_MAX_FILE_BYTES") {
        let bytes: usize = text.trim().parse().map_err(|_| {
            web::Words(format!(
                "MARIE_MAX_FILE_BYTES={text:?} is not a number of bytes"
            ))
        })?;
        config.engine = config.engine.max_file_bytes(bytes);
    }
    if let Ok(text) = std::env::var("MARIE_FILE_QUOTA_BYTES") {
        let bytes: u64 = text.trim().parse().map_err(|_| {
            web::Words(format!(
                "MARIE_FILE_QUOTA_BYTES={text:?} is not a number of bytes"
            ))
        })?;
        config.engine = config.engine.file_quota_bytes(Some(bytes));
    }
    Ok(config)
}

/// `MARIE_TITLES`, or `default` when it is unset.
fn titles_from_env(default: TitlePolicy) -> Result<TitlePolicy, web::Words> {
    let Ok(text) = std::env::var("MARIE_TITLES") else {
        return Ok(default);
    };
    match text.trim() {
        "off" => Ok(TitlePolicy::Off),
        "first_words" => Ok(TitlePolicy::FirstWords),
        "ask_model" => Ok(TitlePolicy::AskModel),
        _ => Err(web::Words(format!(
            "MARIE_TITLES={text:?}: say off, first_words or ask_model"
        ))),
    }
}

/// The address in the environment variable `var`, or `default`.
pub(crate) fn address_from_env(var: &str, default: &str) -> Result<SocketAddr, web::Words> {
    let text = std::env::var(var).unwrap_or_else(|_| default.into());
    text.trim().parse().map_err(|_| {
        web::Words(format!(
            "{var}={text:?} is not an address to listen on: give an IP and a port, e.g. {var}=127.0.0.1:3000"
        ))
    })
}
