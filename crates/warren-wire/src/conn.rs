//! An authenticated session, the same whichever side dialed.
//!
//! A [`Connection`] owns one SSH session channel through a background task
//! (the *pump*) that turns channel data into messages and messages into
//! channel data, answers `Ping`s, sends its own every [`Options::keepalive`],
//! and ends the session when the peer is silent for `keepalive *
//! keepalive_max`, sends a bad frame, or goes away.

use crate::frame::{encode_frame, FrameBuf};
use crate::keys::key_base64;
use crate::{Message, WireError, PROTOCOL_VERSION};
use ed25519_dalek::VerifyingKey;
use russh::{Channel, ChannelId, ChannelMsg, ChannelWriteHalf, Disconnect};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant, MissedTickBehavior};

/// Tunables for both sides.
#[derive(Clone, Debug)]
pub struct Options {
    /// How often each side sends a `Ping` (and the SSH layer a keepalive when
    /// idle). Default 15 s; values under 1 ms are raised to 1 ms.
    pub keepalive: Duration,
    /// A peer silent for `keepalive * keepalive_max` is presumed dead and the
    /// session ends with [`WireError::PeerTimeout`]. Default 3 (at least 1).
    pub keepalive_max: u32,
    /// Bound on setting a session up: dialing (TCP, SSH handshake, auth,
    /// channel), a dialer's time to authenticate and open its channel on the
    /// listening side, and the `Hello` exchange. Default 10 s.
    pub handshake_timeout: Duration,
    /// Listening side: how long a refused authentication takes (constant-time
    /// rejection, russh's `auth_rejection_time`). Default 1 s.
    pub auth_rejection_time: Duration,
    /// Largest frame accepted from the peer (at most [`crate::MAX_FRAME`]).
    /// A larger one ends the session before its payload is read. Default
    /// [`crate::MAX_FRAME`]; the controller lowers it for what agents send.
    pub max_frame_in: usize,
    /// Listening side: connections that have not yet authenticated and
    /// opened their session, in total. More are closed at once. Default 256.
    pub max_preauth: usize,
    /// Listening side: the same, per source address. Default 16.
    pub max_preauth_per_ip: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keepalive: Duration::from_secs(15),
            keepalive_max: 3,
            handshake_timeout: Duration::from_secs(10),
            auth_rejection_time: Duration::from_secs(1),
            max_frame_in: crate::MAX_FRAME,
            max_preauth: 256,
            max_preauth_per_ip: 16,
        }
    }
}

impl Options {
    pub(crate) fn interval(&self) -> Duration {
        self.keepalive.max(Duration::from_millis(1))
    }
    pub(crate) fn misses(&self) -> u32 {
        self.keepalive_max.max(1)
    }
    /// Silence after which the peer is presumed dead.
    pub fn dead_after(&self) -> Duration {
        self.interval().saturating_mul(self.misses())
    }
}

/// Which side opened the SSH connection. Informational only: after `Hello`
/// the protocol is the same either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// We dialed ([`crate::dial`]); the peer is the SSH server.
    Dialed,
    /// We accepted ([`crate::Listener::accept`]); the peer is the SSH client.
    Accepted,
}

/// How the pump reaches the SSH session to end it.
pub(crate) enum SessionCtl {
    Client(russh::client::Handle<crate::ssh::ClientHandler>),
    Server(russh::server::Handle),
}

impl SessionCtl {
    async fn disconnect(&self, reason: &str) {
        let r = match self {
            SessionCtl::Client(h) => h.disconnect(Disconnect::ByApplication, reason, "").await,
            SessionCtl::Server(h) => {
                h.disconnect(Disconnect::ByApplication, reason.into(), String::new())
                    .await
            }
        };
        if let Err(e) = r {
            tracing::trace!("disconnect: {e}");
        }
    }
}

enum Cmd {
    Send(Message, oneshot::Sender<Result<(), WireError>>),
    Close(String, oneshot::Sender<()>),
}

/// The sending half of a [`Connection`]. Cheap to clone.
#[derive(Clone)]
pub struct MessageSender {
    tx: mpsc::Sender<Cmd>,
    closed: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for MessageSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSender")
            .field("closed", &self.closed.get())
            .finish()
    }
}

impl MessageSender {
    fn closed_error(&self) -> WireError {
        WireError::Closed(
            self.closed
                .get()
                .cloned()
                .unwrap_or_else(|| "session ended".into()),
        )
    }

    /// Send one message. Returns once it is handed to the SSH session (not
    /// when the peer has read it). A message above [`crate::MAX_FRAME`] is
    /// refused with [`WireError::FrameTooLarge`] and the session goes on; any
    /// transport failure ends the session. Dropping this future before it
    /// completes may or may not send the message.
    pub async fn send(&self, msg: Message) -> Result<(), WireError> {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Cmd::Send(msg, ack)).await.is_err() {
            return Err(self.closed_error());
        }
        match done.await {
            Ok(r) => r,
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Say `Bye { reason }`, close the channel and the SSH session. Waits
    /// until that is done (or the session is already gone).
    pub async fn close(&self, reason: &str) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Cmd::Close(reason.to_string(), ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The receiving half of a [`Connection`].
pub struct MessageReceiver {
    rx: mpsc::Receiver<Result<Message, WireError>>,
}

impl std::fmt::Debug for MessageReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageReceiver").finish_non_exhaustive()
    }
}

impl MessageReceiver {
    /// The next message. `Ok(None)`: the peer closed the session cleanly
    /// (and every later call returns `Ok(None)`). `Err`: the session ended
    /// on this error (bad frame, dead or vanished peer); later calls return
    /// `Ok(None)`. `Ping` and `Pong` are handled by the connection and never
    /// returned. Cancel-safe: usable in `tokio::select!`.
    pub async fn recv(&mut self) -> Result<Option<Message>, WireError> {
        match self.rx.recv().await {
            Some(Ok(m)) => Ok(Some(m)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }
}

/// An authenticated session with one peer, role-independent: whether we
/// dialed or accepted, it carries the same [`Message`]s both ways. Start with
/// [`Connection::hello`]. Dropping it (both halves, if split) closes the
/// session.
pub struct Connection {
    peer: String,
    authorized: bool,
    peer_key: VerifyingKey,
    remote: Option<SocketAddr>,
    side: Side,
    handshake_timeout: Duration,
    tx: MessageSender,
    rx: MessageReceiver,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("peer_key", &key_base64(&self.peer_key))
            .field("remote", &self.remote)
            .field("side", &self.side)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Peer {
    /// Name the authorize callback gave (accepted), or the address (dialed).
    pub(crate) label: String,
    pub(crate) authorized: bool,
    pub(crate) key: VerifyingKey,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) side: Side,
}

const INBOX: usize = 8;
const MAX_PENDING: usize = 4;

impl Connection {
    pub(crate) fn start<S>(channel: Channel<S>, ctl: SessionCtl, peer: Peer, opts: &Options) -> Connection
    where
        S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    {
        let (cmd_tx, cmd_rx) = mpsc::channel(INBOX);
        let (in_tx, in_rx) = mpsc::channel(INBOX);
        let closed = Arc::new(OnceLock::new());
        let pump = Pump {
            peer: peer.label.clone(),
            keepalive: opts.interval(),
            dead_after: opts.dead_after(),
            max_frame_in: opts.max_frame_in.min(crate::MAX_FRAME),
            closed: closed.clone(),
        };
        tokio::spawn(pump.run(channel, ctl, cmd_rx, in_tx));
        Connection {
            peer: peer.label,
            authorized: peer.authorized,
            peer_key: peer.key,
            remote: peer.remote,
            side: peer.side,
            handshake_timeout: opts.handshake_timeout,
            tx: MessageSender { tx: cmd_tx, closed },
            rx: MessageReceiver { rx: in_rx },
        }
    }

    /// The peer's name: on the accepting side, the name the authorize
    /// callback returned for its key; on the dialing side, its address until
    /// [`hello`](Self::hello), then the host name it gave.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The peer's ed25519 identity (authenticated by SSH either way).
    pub fn peer_key(&self) -> &VerifyingKey {
        &self.peer_key
    }

    /// The peer's socket address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Whether we dialed or accepted this session.
    pub fn side(&self) -> Side {
        self.side
    }

    /// See [`MessageSender::send`].
    pub async fn send(&self, msg: Message) -> Result<(), WireError> {
        self.tx.send(msg).await
    }

    /// See [`MessageReceiver::recv`].
    pub async fn recv(&mut self) -> Result<Option<Message>, WireError> {
        self.rx.recv().await
    }

    /// A sender that can be cloned and used from other tasks.
    pub fn sender(&self) -> MessageSender {
        self.tx.clone()
    }

    /// Split into halves, to send and receive from different tasks.
    pub fn split(self) -> (MessageSender, MessageReceiver) {
        (self.tx, self.rx)
    }

    /// Say `Bye { reason }` and close the session.
    pub async fn close(self, reason: &str) {
        self.tx.close(reason).await
    }

    /// The `Hello` exchange, first thing on every session: send ours (with
    /// [`PROTOCOL_VERSION`] and `me`), read theirs, return the peer's host
    /// name. On the accepting side the name must be the one the peer's key
    /// is authorized as. A version mismatch, a wrong name or any other first
    /// message closes the session with a `Bye` giving the reason. Bounded by
    /// [`Options::handshake_timeout`].
    pub async fn hello(&mut self, me: &str) -> Result<String, WireError> {
        self.send(Message::hello(me)).await?;
        let first = match timeout(self.handshake_timeout, self.recv()).await {
            Ok(r) => r?,
            Err(_) => {
                self.tx.close("no hello in time").await;
                return Err(WireError::Timeout("hello"));
            }
        };
        let err = match first {
            Some(Message::Hello { version, host }) if version == PROTOCOL_VERSION => {
                if self.authorized && host != self.peer {
                    WireError::WrongHost {
                        authorized: self.peer.clone(),
                        claimed: host,
                    }
                } else {
                    self.peer = host.clone();
                    self.authorized = true;
                    return Ok(host);
                }
            }
            Some(Message::Hello { version, .. }) => WireError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: version,
            },
            Some(Message::Bye { reason }) => return Err(WireError::PeerBye(reason)),
            Some(other) => WireError::Protocol(format!("expected hello, got {}", other.kind())),
            None => return Err(WireError::Closed("peer closed before hello".into())),
        };
        tracing::warn!(peer = %self.peer, "refusing session: {err}");
        self.tx.close(&err.to_string()).await;
        Err(err)
    }
}

/// Why the pump stopped.
enum End {
    /// The peer sent EOF or closed the channel at a frame boundary.
    PeerClosed,
    /// Our side asked to close.
    Local(String, Option<oneshot::Sender<()>>),
    /// Every handle to the connection was dropped.
    Dropped,
    Failed(WireError),
}

struct Pump {
    peer: String,
    keepalive: Duration,
    dead_after: Duration,
    max_frame_in: usize,
    closed: Arc<OnceLock<String>>,
}

/// Bound on the messages sent while closing.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Piece of a frame handed to the SSH channel at a time.
const WRITE_CHUNK: usize = 64 * 1024;

impl Pump {
    /// Write one frame in pieces, each of which must go out within `limit`
    /// (a peer that stops reading shuts its window and fails that). Time
    /// spent here, when we are not reading, is not counted as the peer's
    /// silence.
    async fn write<S>(
        &self,
        wr: &ChannelWriteHalf<S>,
        msg: &Message,
        limit: Duration,
        last_rx: &mut Instant,
    ) -> Result<(), WireError>
    where
        S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    {
        let frame = encode_frame(msg)?;
        let started = Instant::now();
        let mut result = Ok(());
        for chunk in frame.chunks(WRITE_CHUNK) {
            match timeout(limit, wr.data_bytes(chunk.to_vec())).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    result = Err(WireError::ConnectionLost);
                    break;
                }
                Err(_) => {
                    result = Err(WireError::PeerTimeout(limit));
                    break;
                }
            }
        }
        *last_rx = (*last_rx + started.elapsed()).min(Instant::now());
        result
    }

    async fn run<S>(
        self,
        channel: Channel<S>,
        ctl: SessionCtl,
        mut cmds: mpsc::Receiver<Cmd>,
        deliver: mpsc::Sender<Delivery>,
    ) where
        S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    {
        let (mut rd, wr) = channel.split();
        let mut tick = tokio::time::interval_at(Instant::now() + self.keepalive, self.keepalive);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut st = PumpState::new(self.max_frame_in);

        let end = loop {
            // Back-pressure: the channel is read only while fewer than
            // MAX_PENDING messages wait for the user.
            let step = tokio::select! {
                m = rd.wait(), if st.pending.len() < MAX_PENDING => {
                    self.on_channel_msg(&mut st, &wr, m).await
                }
                permit = deliver.reserve(), if !st.pending.is_empty() => st.on_deliver_permit(permit),
                cmd = cmds.recv(), if st.cmds_open => self.on_command(&mut st, &wr, cmd, &deliver).await,
                _ = deliver.closed(), if !st.cmds_open && st.pending.is_empty() => Break(End::Dropped),
                _ = tick.tick() => self.on_tick(&mut st, &wr).await,
            };
            if let Break(end) = step {
                break end;
            }
        };
        self.finish(end, st, wr, ctl, cmds, deliver).await;
    }

    /// Something arrived on the channel (`None`: the channel is gone).
    async fn on_channel_msg<S>(
        &self,
        st: &mut PumpState,
        wr: &ChannelWriteHalf<S>,
        m: Option<ChannelMsg>,
    ) -> ControlFlow<End>
    where
        S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    {
        match m {
            Some(ChannelMsg::Data { data }) => {
                st.last_rx = Instant::now();
                st.frames.push(&data);
                self.on_frames(st, wr).await
            }
            Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) => Break(st.at_eof()),
            Some(_) => Continue(()),
            // The SSH session ended under the channel without closing it.
            None => Break(End::Failed(WireError::ConnectionLost)),
        }
    }

    /// Decode every whole frame received so far: answer `Ping`s, drop
    /// `Pong`s, queue the rest for the user (or drop them once nobody reads).
    async fn on_frames<S>(&self, st: &mut PumpState, wr: &ChannelWriteHalf<S>) -> ControlFlow<End>
    where
        S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    {
        while let Some(msg) = or_fail(st.frames.next_message())? {
            match msg {
                Message::Ping { n } => {
                    let pong = Message::Pong { n };
                    or_fail(self.write(wr, &pong, self.dead_after, &mut st.last_rx).await)?;
                }
                Message::Pong { .. } => {}
                msg => {
                    tracing::trace!(peer = %self.peer, kind = msg.kind(), "received");
                    if st.user_reads {
                        st.pending.push_back(msg);
                    }
                }
            }
        }
        Continue(())
    }

    /// A command from a [`MessageSender`] (`None`: every sender is gone).
    async fn on_command<S>(
        &self,
        st: &mut PumpState,
        wr: &ChannelWriteHalf<S>,
        cmd: Option<Cmd>,
        deliver: &mpsc::Sender<Delivery>,
    ) -> ControlFlow<End>
    where
        S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    {
        match cmd {
            Some(Cmd::Send(msg, ack)) => self.on_send(st, wr, msg, ack).await,
            Some(Cmd::Close(reason, ack)) => Break(End::Local(reason, Some(ack))),
            None => {
                st.cmds_open = false;
                if !st.user_reads || deliver.is_closed() {
                    return Break(End::Dropped);
                }
                Continue(())
            }
        }
    }

    /// Write the user's message and tell the sender how that went.
    async fn on_send<S>(
        &self,
        st: &mut PumpState,
        wr: &ChannelWriteHalf<S>,
        msg: Message,
        ack: oneshot::Sender<Result<(), WireError>>,
    ) -> ControlFlow<End>
    where
        S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    {
        match self.write(wr, &msg, self.dead_after, &mut st.last_rx).await {
            Ok(()) => {
                tracing::trace!(peer = %self.peer, kind = msg.kind(), "sent");
                st.said_bye |= matches!(msg, Message::Bye { .. });
                let _ = ack.send(Ok(()));
            }
            // Refused locally (too large, unencodable): the session goes on.
            Err(e @ (WireError::FrameTooLarge { .. } | WireError::Encode(_))) => {
                let _ = ack.send(Err(e));
            }
            Err(e) => {
                let _ = ack.send(Err(WireError::Closed(e.to_string())));
                return Break(End::Failed(e));
            }
        }
        Continue(())
    }

    /// Keepalive: presume the peer dead after `dead_after` of silence, else
    /// ping it.
    async fn on_tick<S>(&self, st: &mut PumpState, wr: &ChannelWriteHalf<S>) -> ControlFlow<End>
    where
        S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    {
        // While messages wait for the user we are not reading: that silence
        // is ours, not the peer's.
        if st.pending.is_empty() && st.last_rx.elapsed() > self.dead_after {
            return Break(End::Failed(WireError::PeerTimeout(st.last_rx.elapsed())));
        }
        st.pings += 1;
        let ping = Message::Ping { n: st.pings };
        or_fail(self.write(wr, &ping, self.dead_after, &mut st.last_rx).await)
    }

    /// Say why (when the transport still works), close the channel and end
    /// the SSH session; hand the user what is left without waiting for
    /// that, unless the user asked to close and waits for it.
    async fn finish<S>(
        self,
        end: End,
        st: PumpState,
        wr: ChannelWriteHalf<S>,
        ctl: SessionCtl,
        cmds: mpsc::Receiver<Cmd>,
        deliver: mpsc::Sender<Delivery>,
    ) where
        S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    {
        let Closing {
            reason,
            bye,
            error,
            ack,
        } = self.closing(end, st.said_bye);
        // Set before dropping `cmds`, so that senders failing from now on
        // give this reason.
        let _ = self.closed.set(reason.clone());
        drop(cmds);
        let shut_down = self.shut_down(wr, ctl, reason, bye, st.last_rx);
        match ack {
            Some(ack) => {
                shut_down.await;
                let _ = ack.send(());
            }
            None => {
                tokio::spawn(shut_down);
            }
        }
        if st.user_reads {
            hand_over(st.pending, error, &deliver).await;
        }
    }

    /// What to tell the peer and the user, given why the pump stopped.
    fn closing(&self, end: End, said_bye: bool) -> Closing {
        match end {
            End::PeerClosed => {
                tracing::debug!(peer = %self.peer, "peer closed the session");
                Closing::clean("peer closed".to_string(), false, None)
            }
            End::Local(reason, ack) => {
                tracing::debug!(peer = %self.peer, %reason, "closing session");
                Closing::clean(reason, !said_bye, ack)
            }
            End::Dropped => Closing::clean("connection dropped".to_string(), !said_bye, None),
            End::Failed(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "closing session");
                Closing {
                    reason: e.to_string(),
                    bye: e.is_protocol_violation(),
                    error: Some(e),
                    ack: None,
                }
            }
        }
    }

    /// Say `Bye { reason }` if `bye`, send EOF, close the channel and
    /// disconnect the SSH session, each step bounded by [`CLOSE_GRACE`].
    async fn shut_down<S>(
        self,
        wr: ChannelWriteHalf<S>,
        ctl: SessionCtl,
        reason: String,
        bye: bool,
        mut last_rx: Instant,
    ) where
        S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    {
        if bye {
            let bye = Message::Bye {
                reason: reason.clone(),
            };
            let _ = self.write(&wr, &bye, CLOSE_GRACE, &mut last_rx).await;
        }
        let _ = timeout(CLOSE_GRACE, wr.eof()).await;
        let _ = timeout(CLOSE_GRACE, wr.close()).await;
        let _ = timeout(CLOSE_GRACE, ctl.disconnect(&reason)).await;
    }
}

/// What the pump hands the user: messages, then at most one error.
type Delivery = Result<Message, WireError>;

/// The pump's state between turns of its loop.
struct PumpState {
    /// Channel data not yet decoded.
    frames: FrameBuf,
    /// Decoded messages waiting for the user; while any wait, we stop
    /// reading the channel (back-pressure) and do not count silence.
    pending: VecDeque<Message>,
    /// When the peer was last heard from, moved on by the time we spend
    /// writing or waiting for the user.
    last_rx: Instant,
    /// Number of the last `Ping` we sent.
    pings: u64,
    /// Whether any [`MessageSender`] is left.
    cmds_open: bool,
    /// Whether the [`MessageReceiver`] is left; once it is gone, received
    /// messages are dropped.
    user_reads: bool,
    /// Whether the user sent a `Bye`, so closing need not say another.
    said_bye: bool,
}

impl PumpState {
    fn new(max_frame: usize) -> Self {
        PumpState {
            frames: FrameBuf::with_max(max_frame),
            pending: VecDeque::new(),
            last_rx: Instant::now(),
            pings: 0,
            cmds_open: true,
            user_reads: true,
            said_bye: false,
        }
    }

    /// The peer sent EOF or closed the channel: clean only between frames.
    fn at_eof(&self) -> End {
        if self.frames.pending() > 0 {
            let (expected, got) = (self.frames.expected(), self.frames.pending());
            return End::Failed(WireError::Truncated { expected, got });
        }
        End::PeerClosed
    }

    /// The user has room for one more message (`Err`: the receiver is gone).
    fn on_deliver_permit(
        &mut self,
        permit: Result<mpsc::Permit<'_, Delivery>, mpsc::error::SendError<()>>,
    ) -> ControlFlow<End> {
        match permit {
            Ok(p) => {
                if let Some(m) = self.pending.pop_front() {
                    p.send(Ok(m));
                }
                // We were not reading while the message waited: that silence was
                // ours, not the peer's.
                self.last_rx = Instant::now();
            }
            Err(_) => {
                self.user_reads = false;
                self.pending.clear();
                if !self.cmds_open {
                    return Break(End::Dropped);
                }
            }
        }
        Continue(())
    }
}

/// How the pump closes the session.
struct Closing {
    /// Given to the peer in `Bye` and to senders in [`WireError::Closed`].
    reason: String,
    /// Whether to say `Bye { reason }` to the peer.
    bye: bool,
    /// The error the session ended on, handed to the user after the messages
    /// left.
    error: Option<WireError>,
    /// A [`MessageSender::close`] waiting until the session is gone.
    ack: Option<oneshot::Sender<()>>,
}

impl Closing {
    fn clean(reason: String, bye: bool, ack: Option<oneshot::Sender<()>>) -> Closing {
        Closing {
            reason,
            bye,
            error: None,
            ack,
        }
    }
}

/// A step's result as the loop's: go on, or end the session on the error.
fn or_fail<T>(r: Result<T, WireError>) -> ControlFlow<End, T> {
    match r {
        Ok(v) => Continue(v),
        Err(e) => Break(End::Failed(e)),
    }
}

/// Hand the user the messages left, then the error the session ended on;
/// stop as soon as the user is gone.
async fn hand_over(pending: VecDeque<Message>, error: Option<WireError>, deliver: &mpsc::Sender<Delivery>) {
    for m in pending {
        if deliver.send(Ok(m)).await.is_err() {
            return;
        }
    }
    if let Some(e) = error {
        let _ = deliver.send(Err(e)).await;
    }
}
