//! [`NodeState`]: what the Socket.IO handlers, the HTTP routes and the handle share. Built once by
//! the builder; cheap to clone behind an `Arc`.

use std::sync::Arc;

use marie_core::{Authenticator, ChatEngine};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;

use crate::config::MarieConfig;
use crate::delivery::Hub;
use crate::guards::Guards;
use crate::reads::ReadBoard;
use crate::rooms::RoomCounts;
use crate::typing::TypingBoard;

pub(crate) struct NodeState<A: Adapter> {
    pub(crate) engine: ChatEngine,
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) io: SocketIo<A>,
    pub(crate) config: MarieConfig,
    pub(crate) rooms: RoomCounts,
    pub(crate) hub: Arc<Hub<A>>,
    pub(crate) guards: Guards,
    pub(crate) typing: TypingBoard<A>,
    pub(crate) reads: ReadBoard<A>,
}
