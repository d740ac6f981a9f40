//! Reading an answer sent as Server-Sent Events, as OpenAI's APIs and Anthropic's send it.

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::StreamExt;
use marie_core::{LlmStream, ProviderError};

use super::send::{Sent, body_error, error_chain, is_json, read_error_message};
use super::{Decoded, answer_stream};

/// The answer in `sent`, its events decoded by `decode` into units for the driver (with
/// the first-token deadline of `sent`, and `idle` between events; a stream that ends
/// without its end marker is the error `missing_end`).
///
/// A JSON response instead of an event stream (a server that ignores `stream: true`, or
/// one that reports an error with a 200 status) is a
/// [`Protocol`](ProviderError::Protocol) error; what it said is logged.
pub(crate) async fn event_stream(
    provider: &'static str,
    sent: Sent,
    idle: std::time::Duration,
    mut decode: impl FnMut(&Event) -> Result<Decoded, ProviderError> + Send + 'static,
    missing_end: &'static str,
) -> Result<LlmStream, ProviderError> {
    let response = sent.response;
    if is_json(&response) {
        let said = read_error_message(response, idle).await;
        tracing::warn!(
            provider,
            upstream = said.as_deref().unwrap_or("-"),
            "expected an event stream, got JSON"
        );
        return Err(ProviderError::Protocol(
            "the server answered with JSON instead of an event stream".into(),
        ));
    }
    let units = response
        .bytes_stream()
        .eventsource()
        .map(move |item| match item {
            Ok(event) => decode(&event),
            Err(EventStreamError::Transport(e)) => Err(body_error(e)),
            Err(e) => Err(ProviderError::Protocol(format!(
                "not a valid event stream: {}",
                error_chain(&e)
            ))),
        });
    Ok(answer_stream(
        units,
        sent.first_token_deadline,
        idle,
        missing_end,
    ))
}
