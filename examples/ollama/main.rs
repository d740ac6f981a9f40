//! MARIE with a local model through [Ollama](https://ollama.com)'s native API: the chat
//! example's page and protocol, answers streamed from `/api/chat`.
//!
//! ```text
//! ollama pull llama3.2
//! cargo run -p marie-examples --example ollama
//! ```
//!
//! then open <http://127.0.0.1:3000>. Environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OLLAMA_HOST` | `127.0.0.1:11434` | where Ollama listens (`host[:port]` or a URL) |
//! | `OLLAMA_MODEL` | `llama3.2` | the model |
//! | `MARIE_ADDR` | `127.0.0.1:3000` | where to listen |
//! | `MARIE_JWT_SECRET` | unset | accept HS256 JWTs; unset = dev-mode logins |

#[path = "../common/server.rs"]
mod server;
#[path = "../common/store.rs"]
mod store;
#[path = "../common/tools.rs"]
mod tools;
#[path = "../common/web.rs"]
mod web;

use std::sync::Arc;

use marie_llm::OllamaProvider;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    web::init_tracing();
    let provider = OllamaProvider::from_env().map_err(|e| format!("Ollama provider: {e}"))?;
    tracing::info!(
        url = provider.url(),
        model = provider.model(),
        "Ollama provider"
    );
    server::serve(
        "ollama",
        Arc::new(provider),
        marie_core::TitlePolicy::AskModel,
    )
    .await
}
