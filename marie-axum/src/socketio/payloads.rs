//! What the Socket.IO front end reads on CONNECT, and the notices of a connection
//! (`docs/protocol.md` section 1). One struct each, serialized as it is.

use std::collections::HashMap;

use marie_core::{ConversationId, SessionId, StreamId, UserId};
use serde::{Deserialize, Serialize};

/// The CONNECT packet's `auth` object.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConnectAuth {
    #[serde(default)]
    pub(crate) token: Option<String>,
    #[serde(default)]
    pub(crate) previous_session: Option<String>,
    /// The seed's name for `previous_session`.
    #[serde(default)]
    pub(crate) previous_sid: Option<String>,
    /// With `previous_session`: the last `seq` the client holds of each answer it was
    /// following, by stream id. Those answers resume at once, before their live tail.
    #[serde(default)]
    pub(crate) last_seqs: HashMap<String, u64>,
}

/// `connected`.
#[derive(Debug, Serialize)]
pub(super) struct Connected<'a> {
    pub(super) status: &'static str,
    pub(super) sid: String,
    pub(super) user_id: &'a UserId,
    pub(super) session: &'a SessionId,
}

/// `reconnected`.
#[derive(Debug, Serialize)]
pub(super) struct Reconnected<'a> {
    pub(super) message: &'static str,
    pub(super) restored: bool,
    pub(super) rooms: &'a [ConversationId],
    pub(super) sid: String,
    pub(super) user_id: &'a UserId,
    pub(super) session: &'a SessionId,
    /// The answers running in those rooms. Their live events wait for the client's
    /// `resume_stream` (at most `DeliveryConfig::restore_hold`), unless `auth.last_seqs`
    /// named them: those were resumed already.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) active_streams: Vec<Running>,
}

/// An answer running in a restored room.
#[derive(Debug, Serialize)]
pub(super) struct Running {
    pub(super) conversation_id: ConversationId,
    pub(super) stream_id: StreamId,
    /// Its last `seq` when the socket was restored.
    pub(super) seq: u64,
    /// Whether it was resumed from `auth.last_seqs` already.
    pub(super) resumed: bool,
}

/// `user_joined`, `user_left`.
#[derive(Debug, Serialize)]
pub(super) struct Presence<'a> {
    pub(super) user_id: &'a UserId,
    pub(super) conversation_id: &'a ConversationId,
}
