//! What a connection knows about itself ([`Session`]), what every
//! connection shares ([`Server`]), and the registry of connected clients
//! behind CLIENT LIST.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;

use crate::antientropy::Repairs;
use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::metrics::{CommandStats, Metrics};

use super::commands::stat_names;
use super::transaction::Multi;

/// What every connection of the node shares.
pub struct Server {
    pub coordinator: Arc<Coordinator>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Anti-entropy repairs operators ask for (SHOAL.REPAIR).
    pub repairs: Arc<Repairs>,
    /// This node's transfers of partitions it gains (SHOAL.STATUS).
    pub transfers: Arc<crate::handoff::transfer::Progress>,
    /// Calls, time and errors per command, for INFO commandstats.
    pub commands: CommandStats,
    pub clients: Clients,
    /// Where clients connect, as bound.
    pub addr: SocketAddr,
    /// Random per process, as Redis's run_id.
    pub run_id: String,
}

impl Server {
    /// What every connection of a node shares: its coordinator, settings
    /// and metrics, its client address (for INFO) and the run id.
    #[must_use]
    pub fn new(
        coordinator: Arc<Coordinator>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        repairs: Arc<Repairs>,
        transfers: Arc<crate::handoff::transfer::Progress>,
        addr: SocketAddr,
        run_id: String,
    ) -> Self {
        let commands = CommandStats::new(stat_names().len());
        Self { coordinator, config, metrics, repairs, transfers, commands, clients: Clients::default(), addr, run_id }
    }
}

/// One connected client, as CLIENT LIST shows it.
pub struct Client {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub fd: i64,
    pub created: Instant,
    pub name: Mutex<Bytes>,
    pub lib: Mutex<(String, String)>,
    /// Milliseconds since `created` of the last command.
    pub last_active: AtomicU64,
    /// The stat slot (see `stat_names`) of the last command, +1 (0: none
    /// yet).
    pub last_command: AtomicUsize,
    pub resp: AtomicU8,
    /// Commands queued in MULTI, -1 outside MULTI.
    pub multi: AtomicI64,
    /// Bytes of the query buffer: the running command's and those after it.
    pub qbuf: AtomicUsize,
}

impl Client {
    /// Notes a command about to run, by its stat slot.
    pub fn touch(&self, slot: usize) {
        self.last_active.store(self.created.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.last_command.store(slot + 1, Ordering::Relaxed);
    }

    /// The CLIENT LIST line of this client.
    #[must_use]
    pub fn describe(&self) -> String {
        let age = self.created.elapsed();
        let idle = age.as_millis() as u64 - self.last_active.load(Ordering::Relaxed).min(age.as_millis() as u64);
        let cmd = match self.last_command.load(Ordering::Relaxed) {
            0 => "NULL",
            i => stat_names().get(i - 1).map_or("NULL", String::as_str),
        };
        let name = String::from_utf8_lossy(&self.name.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
        let (lib_name, lib_ver) = self.lib.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let multi = self.multi.load(Ordering::Relaxed);
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db=0 sub=0 psub=0 ssub=0 multi={} \
             qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} \
             user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            name,
            age.as_secs(),
            idle / 1000,
            if multi >= 0 { "x" } else { "N" },
            multi,
            self.qbuf.load(Ordering::Relaxed),
            cmd,
            self.resp.load(Ordering::Relaxed),
            lib_name,
            lib_ver,
        )
    }
}

/// The connected clients.
#[derive(Default)]
pub struct Clients {
    next_id: AtomicU64,
    map: Mutex<BTreeMap<u64, Arc<Client>>>,
}

impl Clients {
    /// Registers a new connection.
    pub fn register(&self, addr: SocketAddr, laddr: SocketAddr, fd: i64) -> Arc<Client> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let client = Arc::new(Client {
            id,
            addr,
            laddr,
            fd,
            created: Instant::now(),
            name: Mutex::new(Bytes::new()),
            lib: Mutex::new((String::new(), String::new())),
            last_active: AtomicU64::new(0),
            last_command: AtomicUsize::new(0),
            resp: AtomicU8::new(2),
            multi: AtomicI64::new(-1),
            qbuf: AtomicUsize::new(0),
        });
        self.map.lock().unwrap_or_else(PoisonError::into_inner).insert(id, Arc::clone(&client));
        client
    }

    pub fn unregister(&self, id: u64) {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    #[must_use]
    pub fn count(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Every client, by id.
    #[must_use]
    pub fn all(&self) -> Vec<Arc<Client>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }
}

/// One connection's state.
pub struct Session {
    pub server: Arc<Server>,
    pub client: Arc<Client>,
    pub resp3: bool,
    pub authenticated: bool,
    pub multi: Option<Multi>,
}

impl Session {
    #[must_use]
    pub fn new(server: Arc<Server>, client: Arc<Client>) -> Self {
        let authenticated = server.config.requirepass.is_none();
        Self { server, client, resp3: false, authenticated, multi: None }
    }

    #[must_use]
    pub fn coordinator(&self) -> &Coordinator {
        &self.server.coordinator
    }

    pub fn set_resp3(&mut self, resp3: bool) {
        self.resp3 = resp3;
        self.client.resp.store(if resp3 { 3 } else { 2 }, Ordering::Relaxed);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.server.clients.unregister(self.client.id);
    }
}
