//! MARIE with an OpenAI-compatible model: the chat example's page and protocol, answers
//! streamed from OpenAI, vLLM, the llama.cpp server, LM Studio, Ollama's `/v1`, ...
//!
//! ```text
//! OPENAI_API_KEY=sk-... cargo run -p marie-examples --example openai
//! OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_MODEL=Qwen/Qwen2.5-1.5B-Instruct \
//!     cargo run -p marie-examples --example openai
//! ```
//!
//! then open <http://127.0.0.1:3000>. Environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OPENAI_API_KEY` | none | the API key (local servers need none) |
//! | `OPENAI_BASE_URL` | `https://api.openai.com/v1` | the API root; requests go to `{base}/chat/completions` |
//! | `OPENAI_MODEL` | `gpt-4o-mini` | the model |
//! | `OPENAI_API` | `chat` | `responses`: OpenAI's Responses API (`{base}/responses`) instead of chat completions |
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

use marie_llm::OpenAiProvider;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    web::init_tracing();
    let provider = OpenAiProvider::from_env().map_err(|e| format!("OpenAI provider: {e}"))?;
    tracing::info!(
        url = provider.url(),
        model = provider.model(),
        "OpenAI-compatible provider"
    );
    server::serve(
        "openai",
        Arc::new(provider),
        marie_core::TitlePolicy::AskModel,
    )
    .await
}
