//! The MARIE chat example: Socket.IO chat with a web page, on the embedded defaults.
//!
//! ```text
//! cargo run -p marie-examples --example chat
//! ```
//!
//! then open <http://127.0.0.1:3000>. Environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `MARIE_ADDR` | `127.0.0.1:3000` | where to listen (`127.0.0.1:0` picks a free port) |
//! | `MARIE_LLM` | `echo` | the provider: `echo` (a demo, no model), `openai`, `anthropic` or `ollama` |
//! | `MARIE_LLM_FALLBACK` | unset | providers asked in turn when that one is unavailable before its answer begins, comma-separated: `openai`, `anthropic`, `ollama`, `echo` (`marie_llm::FallbackProvider`) |
//! | `MARIE_ECHO_DELAY_MS` | `60` | the echo provider's delay before each word |
//! | `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_MODEL` | none, OpenAI, `gpt-4o-mini` | with `MARIE_LLM=openai`: any OpenAI-compatible server |
//! | `OPENAI_API` | `chat` | with `MARIE_LLM=openai`: `responses` speaks OpenAI's Responses API (`/responses`) instead of chat completions |
//! | `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`, `ANTHROPIC_MODEL` | none, `https://api.anthropic.com`, `claude-haiku-4-5` | with `MARIE_LLM=anthropic`: Anthropic's Messages API |
//! | `ANTHROPIC_MAX_TOKENS`, `ANTHROPIC_THINKING_BUDGET` | `4096`, unset | with `MARIE_LLM=anthropic`: the answer's token limit; tokens for extended thinking (unset: none) |
//! | `OLLAMA_HOST`, `OLLAMA_MODEL` | `127.0.0.1:11434`, `llama3.2` | with `MARIE_LLM=ollama` |
//! | `MARIE_ASSISTANTS` | `assistant,calc` | the named assistants members call in with `@name`, comma-separated (the first answers a message that names none; `calc` uses only the `calculate` tool); `off`: none |
//! | `MARIE_DEMO_TOOLS` | `on` | `off` leaves out the demo tools `calculate` and `send_email` (which needs approval) |
//! | `MARIE_APPROVAL_TIMEOUT_SECS` | `600` | how long a tool call waits for a member's approval |
//! | `MARIE_DATABASE_URL` | unset | keep conversations and uploaded files in SQL: `sqlite://marie.db?mode=rwc` (a file, created if missing) or `postgres://user:pass@host/db`; unset: in memory |
//! | `MARIE_HISTORY_TTL_DAYS` | unset | with `MARIE_DATABASE_URL`: delete conversations nobody wrote to for this many days, history and files with them; unset: kept until deleted |
//! | `MARIE_FILES_DIR` | unset | without `MARIE_DATABASE_URL`: keep uploaded files in this directory (created if missing; one server per directory); unset: in memory. Conversations stay in memory: after a restart a file is readable by the members of whichever conversation takes its id again |
//! | `MARIE_MAX_FILE_BYTES`, `MARIE_FILE_QUOTA_BYTES` | `10485760`, `104857600` | the largest file a user may upload; what one user's files may take in all |
//! | `MARIE_JWT_SECRET` | unset | accept HS256 JWTs (`sub` = user id, `roles` may hold `admin`); unset = dev mode |
//! | `MARIE_MODELS` | unset | the models a conversation may use, comma-separated, the first the default (the provider is asked for the conversation's); unset: the provider's own model, no choice |
//! | `MARIE_MAX_SYSTEM_PROMPT_CHARS` | `4000` | how long a conversation's own system prompt may be (`0`: members cannot set one) |
//! | `MARIE_TITLES` | `first_words` with echo, else `ask_model` | how conversations are named after their first answer: `off`, `first_words` or `ask_model` (the model is asked, counted to the asker's budget) |
//! | `MARIE_ALLOWED_ORIGINS` | see meaning | comma-separated origins allowed to open the Socket.IO endpoint (`*`: any); unset: any in dev mode, else this server's own address |
//!
//! In dev mode anyone can mint a token for any user name at `POST /api/dev/token`: never
//! expose it beyond your machine.

#[path = "../common/fallback.rs"]
mod fallback;
#[path = "../common/server.rs"]
mod server;
#[path = "../common/store.rs"]
mod store;
#[path = "../common/tools.rs"]
mod tools;
#[path = "../common/web.rs"]
mod web;

use std::sync::Arc;

use marie_core::{LlmProvider, TitlePolicy};
use marie_llm::{AnthropicProvider, EchoProvider, OllamaProvider, OpenAiProvider};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    web::init_tracing();
    let choice = std::env::var("MARIE_LLM").unwrap_or_default();
    // The echo provider would only repeat the question as a title: take its first words.
    let titles = match choice.trim() {
        "" | "echo" => TitlePolicy::FirstWords,
        _ => TitlePolicy::AskModel,
    };
    let provider: Arc<dyn LlmProvider> = match choice.trim() {
        "" | "echo" => Arc::new(EchoProvider::from_env_var("MARIE_ECHO_DELAY_MS")),
        "openai" => {
            let provider =
                OpenAiProvider::from_env().map_err(|e| format!("OpenAI provider: {e}"))?;
            tracing::info!(
                url = provider.url(),
                model = provider.model(),
                api = ?provider.api(),
                "OpenAI-compatible provider"
            );
            Arc::new(provider)
        }
        "anthropic" => {
            let provider =
                AnthropicProvider::from_env().map_err(|e| format!("Anthropic provider: {e}"))?;
            tracing::info!(
                url = provider.url(),
                model = provider.model(),
                "Anthropic provider"
            );
            Arc::new(provider)
        }
        "ollama" => {
            let provider =
                OllamaProvider::from_env().map_err(|e| format!("Ollama provider: {e}"))?;
            tracing::info!(
                url = provider.url(),
                model = provider.model(),
                "Ollama provider"
            );
            Arc::new(provider)
        }
        other => {
            return Err(
                format!("MARIE_LLM={other:?}: expected echo, openai, anthropic or ollama").into(),
            );
        }
    };
    let provider = fallback::wrap(provider)?;
    server::serve("chat", provider, titles).await
}
