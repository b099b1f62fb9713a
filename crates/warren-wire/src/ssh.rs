//! The SSH transport (russh): either side may listen or dial; both present
//! one ed25519 identity and accept only the keys they expect.

use crate::conn::{Peer, SessionCtl};
use crate::keys::{key_base64, ssh_private_key, verifying_key};
use crate::{Connection, Options, Side, WireError};
use ed25519_dalek::{SigningKey, VerifyingKey};
use russh::keys::{Algorithm, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, Preferred};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// SSH user name the dialer logs in as; the listener ignores it (the key is
/// the identity).
const SSH_USER: &str = "warren";
const ED25519_ONLY: &[Algorithm] = &[Algorithm::Ed25519];
/// Accepted sessions waiting for [`Listener::accept`].
const BACKLOG: usize = 64;

/// Decides who may connect: the peer's name for an authorized key, `None`
/// to refuse it. Called during authentication (twice per attempt: when the
/// key is offered and once its signature is verified), so keep it cheap.
pub type Authorize = Arc<dyn Fn(&VerifyingKey) -> Option<String> + Send + Sync>;

fn preferred() -> Preferred {
    Preferred {
        key: Cow::Borrowed(ED25519_ONLY),
        ..Preferred::default()
    }
}

/// Accepts authenticated sessions. Dropping it stops accepting; sessions
/// already accepted go on.
pub struct Listener {
    local_addr: SocketAddr,
    incoming: Mutex<mpsc::Receiver<Connection>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next session whose peer authenticated with an authorized key and
    /// opened its session channel. Refused and failed attempts are logged
    /// and never returned. Errors only if the accept loop is gone.
    pub async fn accept(&self) -> Result<Connection, WireError> {
        self.incoming
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| WireError::Closed("listener stopped".into()))
    }
}

/// Listen with default [`Options`]. See [`listen_with`].
pub async fn listen<A, F>(addr: A, identity: SigningKey, authorize: F) -> Result<Listener, WireError>
where
    A: ToSocketAddrs,
    F: Fn(&VerifyingKey) -> Option<String> + Send + Sync + 'static,
{
    listen_with(addr, identity, authorize, Options::default()).await
}

/// Bind `addr` and serve SSH with `identity` as the host key. A client is
/// accepted only by public-key authentication with an ed25519 key for which
/// `authorize` returns its name; it may then open one session channel, which
/// becomes a [`Connection`]. Nothing else (passwords, other channels, exec,
/// forwarding) is allowed.
pub async fn listen_with<A, F>(
    addr: A,
    identity: SigningKey,
    authorize: F,
    opts: Options,
) -> Result<Listener, WireError>
where
    A: ToSocketAddrs,
    F: Fn(&VerifyingKey) -> Option<String> + Send + Sync + 'static,
{
    let tcp = TcpListener::bind(addr).await?;
    let local_addr = tcp.local_addr()?;
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    let config = Arc::new(russh::server::Config {
        methods,
        keys: vec![ssh_private_key(&identity)],
        preferred: preferred(),
        auth_rejection_time: opts.auth_rejection_time,
        auth_rejection_time_initial: Some(opts.auth_rejection_time),
        max_auth_attempts: 3,
        keepalive_interval: Some(opts.interval()),
        keepalive_max: opts.misses() as usize,
        inactivity_timeout: Some(opts.dead_after().saturating_mul(2).max(opts.handshake_timeout)),
        nodelay: true,
        ..Default::default()
    });
    let (tx, rx) = mpsc::channel(BACKLOG);
    let shared = Arc::new(Shared {
        config,
        authorize: Arc::new(authorize),
        opts,
        incoming: tx,
        preauth: Arc::default(),
    });
    tracing::debug!(%local_addr, "listening");
    let task = tokio::spawn(accept_loop(tcp, shared));
    Ok(Listener {
        local_addr,
        incoming: Mutex::new(rx),
        task,
    })
}

struct Shared {
    config: Arc<russh::server::Config>,
    authorize: Authorize,
    opts: Options,
    incoming: mpsc::Sender<Connection>,
    preauth: Arc<StdMutex<Preauth>>,
}

/// Connections not yet authenticated with an open session: in total and by
/// source address. Each holds file descriptors and memory for up to twice the
/// handshake timeout, and anyone who can reach the port can open them, so
/// they are capped (the agent shares its file-descriptor limit with the root
/// engine's `ip`, `wg` and `nft` calls).
#[derive(Default)]
struct Preauth {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One pre-authentication slot; given back when dropped.
struct PreauthSlot {
    ip: IpAddr,
    preauth: Arc<StdMutex<Preauth>>,
}

impl PreauthSlot {
    /// A slot for a connection from `ip`, or `None` when a cap is reached.
    fn take(preauth: &Arc<StdMutex<Preauth>>, ip: IpAddr, opts: &Options) -> Option<PreauthSlot> {
        let mut p = preauth.lock().unwrap_or_else(|e| e.into_inner());
        let mine = p.by_ip.get(&ip).copied().unwrap_or(0);
        if p.total >= opts.max_preauth || mine >= opts.max_preauth_per_ip {
            return None;
        }
        p.total += 1;
        p.by_ip.insert(ip, mine + 1);
        Some(PreauthSlot {
            ip,
            preauth: preauth.clone(),
        })
    }
}

impl Drop for PreauthSlot {
    fn drop(&mut self) {
        let mut p = self.preauth.lock().unwrap_or_else(|e| e.into_inner());
        p.total = p.total.saturating_sub(1);
        if let Some(n) = p.by_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                p.by_ip.remove(&self.ip);
            }
        }
    }
}

async fn accept_loop(tcp: TcpListener, shared: Arc<Shared>) {
    let mut refused: u64 = 0;
    loop {
        match tcp.accept().await {
            Ok((sock, remote)) => match PreauthSlot::take(&shared.preauth, remote.ip(), &shared.opts) {
                Some(slot) => {
                    tokio::spawn(serve_one(sock, remote, slot, shared.clone()));
                }
                None => {
                    // Closed at once; logged sparingly (a flood must not flood the log).
                    refused += 1;
                    if refused.is_power_of_two() {
                        tracing::warn!(%remote, refused, "too many unauthenticated connections; closing new ones");
                    }
                    drop(sock);
                }
            },
            Err(e) => {
                // EMFILE and friends: transient; do not spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One TCP connection: SSH, authentication, one session channel; then the
/// [`Connection`] runs on its own and this task only waits for the end.
async fn serve_one(sock: TcpStream, remote: SocketAddr, slot: PreauthSlot, shared: Arc<Shared>) {
    let _ = sock.set_nodelay(true);
    let opened = Arc::new(AtomicBool::new(false));
    let handler = ServerHandler {
        shared: shared.clone(),
        remote,
        peer: None,
        opened: opened.clone(),
        preauth: Some(slot),
    };
    let session = match timeout(
        shared.opts.handshake_timeout,
        russh::server::run_stream(shared.config.clone(), sock, handler),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%remote, "SSH setup failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "SSH setup timed out");
            return;
        }
    };
    let handle = session.handle();
    tokio::pin!(session);
    let result = tokio::select! {
        r = &mut session => r,
        _ = tokio::time::sleep(shared.opts.handshake_timeout) => {
            if !opened.load(Ordering::SeqCst) {
                tracing::info!(%remote, "no authenticated session in time; disconnecting");
                let why = "authenticate and open a session in time".to_string();
                let _ = handle.disconnect(Disconnect::ByApplication, why, String::new()).await;
            }
            (&mut session).await
        }
    };
    match result {
        Ok(()) => tracing::debug!(%remote, "SSH connection closed"),
        Err(e) => tracing::debug!(%remote, "SSH connection ended: {e}"),
    }
}

struct ServerHandler {
    shared: Arc<Shared>,
    remote: SocketAddr,
    /// Set once a key is verified and authorized.
    peer: Option<(String, VerifyingKey)>,
    opened: Arc<AtomicBool>,
    /// Given back once the session channel is open (or the connection ends).
    preauth: Option<PreauthSlot>,
}

impl ServerHandler {
    fn authorized(&self, key: &PublicKey) -> Option<(String, VerifyingKey)> {
        let Some(vk) = verifying_key(key) else {
            let algorithm = key.algorithm();
            tracing::warn!(remote = %self.remote, %algorithm, "refused: not an ed25519 key");
            return None;
        };
        match (self.shared.authorize)(&vk) {
            Some(name) => Some((name, vk)),
            None => {
                tracing::warn!(remote = %self.remote, key = %key_base64(&vk), "refused: key not authorized");
                None
            }
        }
    }
}

impl russh::server::Handler for ServerHandler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.authorized(offer.public_key) {
            Some(_) => Auth::Accept,
            None => Auth::reject(),
        })
    }

    async fn auth_publickey(&mut self, _user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        match self.authorized(key.public_key) {
            Some((name, vk)) => {
                tracing::debug!(remote = %self.remote, peer = %name, "authenticated");
                self.peer = Some((name, vk));
                Ok(Auth::Accept)
            }
            None => Ok(Auth::reject()),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((name, key)) = self.peer.clone() else {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        if self.opened.swap(true, Ordering::SeqCst) {
            tracing::warn!(peer = %name, "refused a second session channel");
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        }
        reply.accept().await;
        self.preauth = None;
        let peer = Peer {
            label: name,
            authorized: true,
            key,
            remote: Some(self.remote),
            side: Side::Accepted,
        };
        let conn = Connection::start(
            channel,
            SessionCtl::Server(session.handle()),
            peer,
            &self.shared.opts,
        );
        if let Err(e) = self.shared.incoming.try_send(conn) {
            // Dropping the connection closes it.
            tracing::warn!(remote = %self.remote, "listener not accepting ({e}); closing the session");
        }
        Ok(())
    }
}

/// The dialing side's russh handler: pins the server's host key.
pub(crate) struct ClientHandler {
    expected: VerifyingKey,
}

impl russh::client::Handler for ClientHandler {
    type Error = WireError;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(WireError::UnsupportedHostKey("certificate".into()))
            }
        };
        match verifying_key(key) {
            Some(vk) if vk == self.expected => Ok(true),
            Some(vk) => Err(WireError::HostKeyMismatch {
                expected: key_base64(&self.expected),
                got: key_base64(&vk),
            }),
            None => Err(WireError::UnsupportedHostKey(key.algorithm().to_string())),
        }
    }
}

/// Dial with default [`Options`]. See [`dial_with`].
pub async fn dial<A: ToSocketAddrs>(
    addr: A,
    identity: SigningKey,
    expected_server_key: VerifyingKey,
) -> Result<Connection, WireError> {
    dial_with(addr, identity, expected_server_key, &Options::default()).await
}

/// Connect to `addr`, accept the server only if its host key is
/// `expected_server_key`, authenticate with `identity`, open the session
/// channel. Bounded by [`Options::handshake_timeout`].
pub async fn dial_with<A: ToSocketAddrs>(
    addr: A,
    identity: SigningKey,
    expected_server_key: VerifyingKey,
    opts: &Options,
) -> Result<Connection, WireError> {
    match timeout(
        opts.handshake_timeout,
        dial_inner(addr, identity, expected_server_key, opts),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(WireError::Timeout("dial")),
    }
}

async fn dial_inner<A: ToSocketAddrs>(
    addr: A,
    identity: SigningKey,
    expected: VerifyingKey,
    opts: &Options,
) -> Result<Connection, WireError> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let remote = tcp.peer_addr().ok();
    let config = Arc::new(russh::client::Config {
        preferred: preferred(),
        keepalive_interval: Some(opts.interval()),
        keepalive_max: opts.misses() as usize,
        inactivity_timeout: Some(opts.dead_after().saturating_mul(2).max(opts.handshake_timeout)),
        nodelay: true,
        ..Default::default()
    });
    let mut handle = russh::client::connect_stream(config, tcp, ClientHandler { expected }).await?;
    let key = PrivateKeyWithHashAlg::new(Arc::new(ssh_private_key(&identity)), None);
    let auth = handle.authenticate_publickey(SSH_USER, key).await?;
    if !auth.success() {
        let _ = handle
            .disconnect(Disconnect::ByApplication, "authentication refused", "")
            .await;
        return Err(WireError::AuthRefused);
    }
    let channel = handle.channel_open_session().await?;
    let label = remote.map(|a| a.to_string()).unwrap_or_else(|| "server".into());
    tracing::debug!(peer = %label, "session open");
    let peer = Peer {
        label,
        authorized: false,
        key: expected,
        remote,
        side: Side::Dialed,
    };
    Ok(Connection::start(channel, SessionCtl::Client(handle), peer, opts))
}
