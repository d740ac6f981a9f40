//! [`MarieConfig`]: every setting of the Socket.IO and HTTP front ends, the engine's included.

use std::time::Duration;

use marie_core::EngineConfig;

use crate::delivery::DeliveryConfig;
use crate::guards::limits::Limits;
use crate::guards::origin::AllowedOrigins;

/// Settings of the Socket.IO front end. `Default` follows `docs/protocol.md`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MarieConfig {
    /// The Socket.IO namespace the protocol is mounted on (`"/"`).
    pub namespace: String,
    /// Accept `?token=` in the handshake URL when the CONNECT `auth` has none (the seed's
    /// way, off by default: URLs end up in logs and proxies).
    pub allow_query_token: bool,
    /// How long a session can be resumed after its last change.
    pub session_ttl: Duration,
    /// Engine.IO ping interval (25 s).
    pub ping_interval: Duration,
    /// Engine.IO ping timeout (60 s).
    pub ping_timeout: Duration,
    /// The largest Engine.IO payload, in bytes: an HTTP long-polling body or a WebSocket
    /// message (both are enforced; a bigger one closes the connection).
    pub max_payload: u64,
    /// The read buffer of each WebSocket connection, in bytes (1 KiB). A bigger message is
    /// read in several steps. socketioxide's default is 4 KiB; chat events are a few hundred
    /// bytes, and every idle connection holds this buffer (`docs/benchmarks.md`: 4 KiB to
    /// 1 KiB takes about 3 KiB off each connection).
    pub ws_read_buffer_size: usize,
    /// The engine's limits.
    pub engine: EngineConfig,
    /// Per-client delivery: queue length, byte and stall bounds, bursts.
    pub delivery: DeliveryConfig,
    /// Cancel an answer when the socket that asked for it disconnects (off: others may be
    /// watching, and the asker may come back and resume).
    pub cancel_on_asker_disconnect: bool,
    /// Per-event, per-socket and per-user limits (`docs/security.md`).
    pub limits: Limits,
    /// The `Origin`s allowed to open the Socket.IO endpoint (any by default).
    pub allowed_origins: AllowedOrigins,
    /// End a connection when its identity's `expires_at` passes (on by default).
    pub disconnect_on_expiry: bool,
    /// How long a member's `typing` lasts without a repeat before the others are told it
    /// stopped (5 s).
    pub typing_timeout: Duration,
}

impl Default for MarieConfig {
    fn default() -> Self {
        Self {
            namespace: "/".into(),
            allow_query_token: false,
            session_ttl: Duration::from_secs(3600),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(60),
            max_payload: 1024 * 1024,
            ws_read_buffer_size: 1024,
            engine: EngineConfig::default(),
            delivery: DeliveryConfig::default(),
            cancel_on_asker_disconnect: false,
            limits: Limits::default(),
            allowed_origins: AllowedOrigins::Any,
            disconnect_on_expiry: true,
            typing_timeout: Duration::from_secs(5),
        }
    }
}
