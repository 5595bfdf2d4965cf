//! The Redis backend: state shared by several Viaduct instances.
//!
//! **Synchronous client, a small pool, socket timeouts.** Policy imports run
//! on the proxy's worker threads and must answer synchronously, so the other
//! way, the async `ConnectionManager` on a runtime thread of its own, needs
//! two thread hand-offs per call (to that thread and back). Measured on this
//! 2-core VM, 10k `increment`s with a TTL against a loopback redis-server 7.0
//! (release build, same moment, quiet machine): the synchronous connection
//! p50 19 µs / p99 37-48 µs, the connection manager behind a one-worker or
//! a current-thread runtime p50 33-34 µs / p99 64-71 µs. So each worker
//! thread takes a connection from the pool (one per thread busy at once: a
//! handful), writes the command and blocks on its socket, with read and
//! write timeouts of `timeout`. No tokio here.
//!
//! **Failing fast, reconnecting in the background.** A connection that
//! failed or timed out is dropped (a late answer must not be read as the
//! next call's). A refused or broken connection, or three timeouts in a row,
//! mark the server down: from then on calls fail at once with
//! [`StateError::Unavailable`] instead of each waiting out the timeout, and a
//! reconnect thread (parked while the server is up) connects and `PING`s
//! with a backoff of 50 ms doubling to 1 s until it answers. The first
//! connection is tried once, within `timeout`, by [`RedisState::open`]; if
//! Redis is down then, the proxy starts anyway and the thread takes over.
//!
//! **One atomic step per call.** `increment` is a Lua script (`INCRBY`, then
//! `PEXPIRE key ttl NX`, Redis 7.0+) and so is `compare_and_swap` (`GET`,
//! compare, `SET`); scripts are sent by SHA and loaded again on `NOSCRIPT`
//! (after a Redis restart). Every key is prefixed with `prefix`.

use super::{ttl_ms, ErrorCounts, ErrorLog, State, StateError, StateOp};
use redis::{Client, Connection, RedisError, RedisResult, Script};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Timeouts in a row that mark the server down (one may be a slow moment).
const TIMEOUTS_TO_DOWN: u32 = 3;
/// The reconnect thread's first and longest wait between attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a background connection attempt may take (nobody waits on it).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle connections kept; more are closed when handed back.
const MAX_IDLE: usize = 32;

/// `KEYS[1]` the counter, `ARGV[1]` delta, `ARGV[2]` TTL in ms or ''.
const INCREMENT: &str = r"
local n = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(n) == 'table' and n.err then
  -- Not an integer, or past i64: a fresh counter.
  redis.call('DEL', KEYS[1])
  n = redis.call('INCRBY', KEYS[1], ARGV[1])
end
if ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2], 'NX')
end
return n
";

/// `KEYS[1]`; `ARGV[1]` '1' if a value is expected, '0' if absence is;
/// `ARGV[2]` the expected value; `ARGV[3]` the new one; `ARGV[4]` TTL in ms or ''.
const COMPARE_AND_SWAP: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
";

/// Where Redis is and how long a call may take.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db` (or `unix:///path`).
    pub url: String,
    /// Bound of one call, and of the first connection at start.
    pub timeout: Duration,
    /// Put before every key, so instances of one cluster (and nothing else) share keys.
    pub prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: "redis://127.0.0.1:6379/0".into(),
            timeout: Duration::from_millis(50),
            prefix: "viaduct:".into(),
        }
    }
}

/// Why a Redis backend could not be made (a configuration error, not an outage).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL cannot be used.
    #[error("{url:?} is not a usable Redis URL: {reason}")]
    Url {
        /// The URL (it may hold a password: it is only shown to the operator who wrote it).
        url: String,
        /// The redis crate's explanation.
        reason: String,
    },
    /// The reconnect thread could not start.
    #[error("starting the Redis reconnect thread: {0}")]
    Thread(std::io::Error),
}

/// The Redis-backed state.
#[derive(Debug)]
pub struct RedisState {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// `host:port/db`, for log lines (never the URL: it may hold a password).
    server: String,
    timeout: Duration,
    prefix: Vec<u8>,
    idle: Mutex<Vec<Connection>>,
    /// Calls fail at once; the reconnect thread is at work.
    down: AtomicBool,
    /// Why, for the errors of calls refused meanwhile.
    down_reason: Mutex<String>,
    timeouts_in_a_row: AtomicU32,
    increment: Script,
    compare_and_swap: Script,
    errors: ErrorLog,
    /// The reconnect thread, unparked when the server goes down or the state is dropped.
    reconnector: Mutex<Option<Thread>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("server", &self.server)
            .field("down", &self.down.load(Ordering::Relaxed))
            .finish()
    }
}

impl RedisState {
    /// Checks a URL without connecting (for `viaduct check` and config validation).
    pub fn check_url(url: &str) -> Result<(), OpenError> {
        client(url).map(|_| ())
    }

    /// Connects once within `settings.timeout`, and starts the reconnect
    /// thread. Redis being down is not an error here: calls fail until the
    /// thread connects.
    pub fn open(settings: RedisSettings) -> Result<RedisState, OpenError> {
        let client = client(&settings.url)?;
        let info = client.get_connection_info();
        let server = format!("{}/{}", info.addr(), info.redis_settings().db());
        let inner = Arc::new(Inner {
            client,
            server,
            timeout: settings.timeout,
            prefix: settings.prefix.into_bytes(),
            idle: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            down_reason: Mutex::new(String::new()),
            timeouts_in_a_row: AtomicU32::new(0),
            increment: Script::new(INCREMENT),
            compare_and_swap: Script::new(COMPARE_AND_SWAP),
            errors: ErrorLog::new("redis"),
            reconnector: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let thread = std::thread::Builder::new()
            .name("state-redis".into())
            .spawn(move || reconnect(&weak))
            .map_err(OpenError::Thread)?;
        *lock(&inner.reconnector) = Some(thread.thread().clone());
        match inner.connect(inner.timeout) {
            Ok(con) => {
                tracing::info!(server = %inner.server, "state: connected to Redis");
                inner.put_back(con);
            }
            Err(e) => {
                tracing::warn!(server = %inner.server, error = %e, "state: Redis unreachable at start; state calls fail until it answers (reconnecting in the background)");
                inner.mark_down(e.to_string());
            }
        }
        Ok(RedisState { inner })
    }

    /// `host:port/db` (never the URL: it may hold a password).
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// True while the server is taken as down (calls fail at once).
    pub fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::Acquire)
    }

    /// Round trip to the server (`PING`), for `viaduct check`.
    pub fn ping(&self) -> Result<(), StateError> {
        self.inner
            .try_call(|con| redis::cmd("PING").query::<String>(con).map(|_| ()))
    }
}

impl Drop for RedisState {
    fn drop(&mut self) {
        // The thread holds a Weak: woken, it finds no state and ends.
        if let Some(t) = lock(&self.inner.reconnector).take() {
            t.unpark();
        }
    }
}

fn client(url: &str) -> Result<Client, OpenError> {
    Client::open(url).map_err(|e| OpenError::Url {
        url: url.into(),
        reason: e.to_string(),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn connect(&self, timeout: Duration) -> RedisResult<Connection> {
        let con = self.client.get_connection_with_timeout(timeout)?;
        con.set_read_timeout(Some(self.timeout))?;
        con.set_write_timeout(Some(self.timeout))?;
        Ok(con)
    }

    fn put_back(&self, con: Connection) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(con);
        }
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    fn mark_down(&self, reason: String) {
        *lock(&self.down_reason) = reason;
        if !self.down.swap(true, Ordering::AcqRel) {
            // The other idle connections most likely lead to the same dead server.
            lock(&self.idle).clear();
            if let Some(t) = lock(&self.reconnector).as_ref() {
                t.unpark();
            }
        }
    }

    /// Runs one command on a pooled connection; counts and logs a failure.
    fn call<T>(
        &self,
        op: StateOp,
        command: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StateError> {
        let result = self.try_call(command);
        if let Err(e) = &result {
            self.errors.record(op, e);
        }
        result
    }

    fn try_call<T>(
        &self,
        command: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StateError> {
        if self.down.load(Ordering::Acquire) {
            return Err(StateError::Unavailable(format!(
                "Redis {} is down ({}); reconnecting",
                self.server,
                lock(&self.down_reason)
            )));
        }
        let pooled = lock(&self.idle).pop();
        let mut con = match pooled {
            Some(con) => con,
            None => self.connect(self.timeout).map_err(|e| self.failed(e))?,
        };
        match command(&mut con) {
            Ok(v) => {
                self.timeouts_in_a_row.store(0, Ordering::Relaxed);
                self.put_back(con);
                Ok(v)
            }
            Err(e) => {
                if !(e.is_io_error() || e.is_unrecoverable_error()) {
                    // An answer (an error reply): the connection is in step.
                    self.put_back(con);
                }
                Err(self.failed(e))
            }
        }
    }

    /// The error for a failed command; marks the server down when it is gone.
    fn failed(&self, e: RedisError) -> StateError {
        if e.is_timeout() {
            let n = self.timeouts_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= TIMEOUTS_TO_DOWN {
                self.mark_down(format!("{n} timeouts in a row"));
            }
            return StateError::Timeout(format!(
                "Redis {} did not answer within {} ms",
                self.server,
                self.timeout.as_millis()
            ));
        }
        let message = format!("Redis {}: {e}", self.server);
        if e.is_io_error() || e.is_unrecoverable_error() {
            self.mark_down(e.to_string());
        }
        StateError::Unavailable(message)
    }
}

/// The reconnect thread: parked while the server is up; while it is down,
/// connects and pings with a backoff. Ends when the state is dropped.
fn reconnect(weak: &Weak<Inner>) {
    let mut backoff = BACKOFF_MIN;
    let mut down_since: Option<Instant> = None;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if !inner.down.load(Ordering::Acquire) {
            drop(inner);
            backoff = BACKOFF_MIN;
            std::thread::park();
            continue;
        }
        let since = *down_since.get_or_insert_with(Instant::now);
        let attempt = inner.connect(RECONNECT_TIMEOUT).and_then(|mut con| {
            redis::cmd("PING").query::<String>(&mut con)?;
            Ok(con)
        });
        match attempt {
            Ok(con) => {
                inner.put_back(con);
                inner.timeouts_in_a_row.store(0, Ordering::Relaxed);
                inner.down.store(false, Ordering::Release);
                down_since = None;
                tracing::info!(
                    server = %inner.server,
                    down_ms = since.elapsed().as_millis() as u64,
                    "state: Redis reachable again"
                );
            }
            Err(e) => {
                *lock(&inner.down_reason) = e.to_string();
                drop(inner);
                std::thread::park_timeout(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

impl State for RedisState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let k = self.inner.key(key);
        self.inner
            .call(StateOp::Get, |con| redis::cmd("GET").arg(&k).query(con))
    }

    fn set(&self, key: &[u8], value: Vec<u8>, ttl: Option<Duration>) -> Result<(), StateError> {
        let k = self.inner.key(key);
        self.inner.call(StateOp::Set, |con| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&k).arg(&value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(ttl_ms(ttl));
            }
            cmd.query(con)
        })
    }

    fn increment(&self, key: &[u8], delta: i64, ttl: Option<Duration>) -> Result<i64, StateError> {
        let k = self.inner.key(key);
        self.inner.call(StateOp::Increment, |con| {
            let mut call = self.inner.increment.prepare_invoke();
            call.key(&k).arg(delta);
            match ttl {
                Some(ttl) => call.arg(ttl_ms(ttl)),
                None => call.arg(""),
            };
            call.invoke(con)
        })
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        let k = self.inner.key(key);
        self.inner.call(StateOp::CompareAndSwap, |con| {
            let mut call = self.inner.compare_and_swap.prepare_invoke();
            call.key(&k);
            match &expected {
                Some(v) => call.arg("1").arg(v.as_slice()),
                None => call.arg("0").arg(""),
            };
            call.arg(new.as_slice());
            match ttl {
                Some(ttl) => call.arg(ttl_ms(ttl)),
                None => call.arg(""),
            };
            call.invoke::<i64>(con).map(|swapped| swapped == 1)
        })
    }

    fn delete(&self, key: &[u8]) -> Result<(), StateError> {
        let k = self.inner.key(key);
        self.inner
            .call(StateOp::Delete, |con| redis::cmd("DEL").arg(&k).query(con))
    }

    fn errors(&self) -> ErrorCounts {
        self.inner.errors.counts()
    }
}
