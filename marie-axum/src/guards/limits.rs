//! [`Limits`]: how much one client and one user may ask of a server.
//!
//! Each limit is answered with its protocol code (`docs/protocol.md` section 4) and, unless
//! said otherwise below, the offending client keeps its connection:
//!
//! | limit | answer |
//! |---|---|
//! | [`MarieConfig::max_payload`](crate::MarieConfig::max_payload) (transport) | the connection is closed: WebSocket close 1009 (message too big), HTTP 413 for long-polling |
//! | [`max_event_bytes`](Limits::max_event_bytes) | `payload_too_large` |
//! | [`max_binary_attachments`](Limits::max_binary_attachments) | `payload_too_large`; more than [`hard_binary_attachments`](Limits::hard_binary_attachments) closes the connection |
//! | `engine.max_message_bytes` | `payload_too_large` |
//! | [`max_rooms_per_socket`](Limits::max_rooms_per_socket) | `rate_limited` on `join_conversation` |
//! | [`max_connections_per_user`](Limits::max_connections_per_user) | the CONNECT is refused: `connect_error` `rate_limited` |
//! | [`events`](Limits::events), [`messages`](Limits::messages) | `rate_limited` |

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

/// A rate: `burst` events at once, then one more every `period / count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per `period`, on average.
    pub count: u32,
    /// The period `count` is measured over.
    pub period: Duration,
    /// Events allowed at once, after a quiet spell.
    pub burst: u32,
}

impl Rate {
    /// `count` events per second, `burst` at once.
    pub fn per_second(count: u32, burst: u32) -> Self {
        Self {
            count,
            period: Duration::from_secs(1),
            burst,
        }
    }

    /// `count` events per minute, `burst` at once.
    pub fn per_minute(count: u32, burst: u32) -> Self {
        Self {
            count,
            period: Duration::from_secs(60),
            burst,
        }
    }

    /// The governor quota; `None` when the rate allows nothing (count or burst 0), which is
    /// taken as "no limit".
    pub(crate) fn quota(&self) -> Option<Quota> {
        let count = NonZeroU32::new(self.count)?;
        let burst = NonZeroU32::new(self.burst)?;
        let every = self.period.checked_div(count.get())?;
        Some(Quota::with_period(every.max(Duration::from_nanos(1)))?.allow_burst(burst))
    }
}

/// Limits per event, per socket and per user. `Default` suits a public chat; see the module
/// documentation for how each is answered.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// The largest event, in bytes of its Socket.IO packet (event name and JSON arguments):
    /// 64 KiB. Must be above `engine.max_message_bytes` plus the JSON around it.
    pub max_event_bytes: usize,
    /// Binary attachments accepted with one event: 0 (no MARIE event takes any). Events with
    /// more are answered `payload_too_large`.
    pub max_binary_attachments: usize,
    /// Binary attachments one packet may announce before the parser closes the connection
    /// (it must buffer them before any handler runs): 16.
    pub hard_binary_attachments: usize,
    /// Conversations one connection may be in at once: 64.
    pub max_rooms_per_socket: usize,
    /// Connections one user may hold on one node at once: 32.
    pub max_connections_per_user: usize,
    /// Events of any kind per user (all their connections on this node together):
    /// 20 per second, 60 at once. `count: 0` disables it.
    pub events: Rate,
    /// `send_message` and `send_message_with_ack` per user (each starts a model answer):
    /// 30 per minute, 10 at once. `count: 0` disables it.
    pub messages: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: 64 * 1024,
            max_binary_attachments: 0,
            hard_binary_attachments: 16,
            max_rooms_per_socket: 64,
            max_connections_per_user: 32,
            events: Rate::per_second(20, 60),
            messages: Rate::per_minute(30, 10),
        }
    }
}

impl Limits {
    /// No rate limits and very high quotas: for tests and benchmarks, never production.
    pub fn unlimited() -> Self {
        Self {
            max_event_bytes: usize::MAX,
            max_binary_attachments: usize::MAX,
            hard_binary_attachments: 10_000,
            max_rooms_per_socket: usize::MAX,
            max_connections_per_user: usize::MAX,
            events: Rate::per_second(0, 0),
            messages: Rate::per_second(0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_become_quotas() {
        assert!(Rate::per_second(0, 5).quota().is_none());
        assert!(Rate::per_second(5, 0).quota().is_none());
        let q = Rate::per_minute(30, 10).quota().unwrap();
        assert_eq!(q.burst_size().get(), 10);
        assert_eq!(q.replenish_interval(), Duration::from_secs(2));
    }
}
