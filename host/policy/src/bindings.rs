//! Host side of the `viaduct:policy` world: generated bindings and the
//! import implementations (request resource, log, metrics, kv, registrar,
//! clock).

use crate::request::RequestView;
use crate::state::{OnError, State, StateError};
use crate::store::StoreData;
use std::time::Instant;
use wasmtime::component::Resource;

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "policy",
    with: {
        "viaduct:policy/types.request": crate::request::RequestView,
    },
    // Request methods can fail on a stale handle: that is a trap, not a policy error.
    imports: {
        "viaduct:policy/types": trappable,
        // Under `on_error = "closed"` a failed state call aborts the policy call.
        "viaduct:policy/kv": trappable,
        "viaduct:policy/registrar": trappable,
    },
});

pub use viaduct::policy::types::{KvError, Level, Target as WitTarget, Transport as WitTransport};

use viaduct::policy::{clock, kv, log, metrics, registrar, types};

impl StoreData {
    fn view(&self, r: &Resource<RequestView>) -> wasmtime::Result<&RequestView> {
        Ok(self.table.get(r)?)
    }
    fn view_mut(&mut self, r: &Resource<RequestView>) -> wasmtime::Result<&mut RequestView> {
        Ok(self.table.get_mut(r)?)
    }
}

impl types::Host for StoreData {}

impl types::HostRequest for StoreData {
    fn method(&mut self, r: Resource<RequestView>) -> wasmtime::Result<String> {
        Ok(self.view(&r)?.method())
    }
    fn request_uri(&mut self, r: Resource<RequestView>) -> wasmtime::Result<String> {
        Ok(self.view(&r)?.request_uri())
    }
    fn request_uri_user(&mut self, r: Resource<RequestView>) -> wasmtime::Result<Option<String>> {
        Ok(self.view(&r)?.request_uri_parts().0)
    }
    fn request_uri_host(&mut self, r: Resource<RequestView>) -> wasmtime::Result<String> {
        Ok(self.view(&r)?.request_uri_parts().1)
    }
    fn request_uri_port(&mut self, r: Resource<RequestView>) -> wasmtime::Result<Option<u16>> {
        Ok(self.view(&r)?.request_uri_parts().2)
    }
    fn from_uri(&mut self, r: Resource<RequestView>) -> wasmtime::Result<String> {
        Ok(self.view(&r)?.from().0)
    }
    fn from_tag(&mut self, r: Resource<RequestView>) -> wasmtime::Result<Option<String>> {
        Ok(self.view(&r)?.from().1)
    }
    fn to_uri(&mut self, r: Resource<RequestView>) -> wasmtime::Result<String> {
        Ok(self.view(&r)?.to().0)
    }
    fn to_tag(&mut self, r: Resource<RequestView>) -> wasmtime::Result<Option<String>> {
        Ok(self.view(&r)?.to().1)
    }
    fn call_id(&mut self, r: Resource<RequestView>) -> wasmtime::Result<String> {
        Ok(self.view(&r)?.call_id())
    }
    fn source_ip(&mut self, r: Resource<RequestView>) -> wasmtime::Result<String> {
        Ok(self.view(&r)?.source.ip().to_string())
    }
    fn source_port(&mut self, r: Resource<RequestView>) -> wasmtime::Result<u16> {
        Ok(self.view(&r)?.source.port())
    }
    fn transport(&mut self, r: Resource<RequestView>) -> wasmtime::Result<WitTransport> {
        Ok(match self.view(&r)?.transport {
            viaduct_proxy::Transport::Udp => WitTransport::Udp,
            viaduct_proxy::Transport::Tcp => WitTransport::Tcp,
            viaduct_proxy::Transport::Tls => WitTransport::Tls,
            viaduct_proxy::Transport::Ws => WitTransport::Ws,
            viaduct_proxy::Transport::Wss => WitTransport::Wss,
        })
    }
    fn header(
        &mut self,
        r: Resource<RequestView>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        Ok(self.view(&r)?.header(&name))
    }
    fn headers(&mut self, r: Resource<RequestView>, name: String) -> wasmtime::Result<Vec<String>> {
        Ok(self.view(&r)?.headers(&name))
    }
    fn header_names(&mut self, r: Resource<RequestView>) -> wasmtime::Result<Vec<String>> {
        Ok(self.view(&r)?.header_names())
    }
    fn body(&mut self, r: Resource<RequestView>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.view(&r)?.body())
    }
    fn set_header(
        &mut self,
        r: Resource<RequestView>,
        name: String,
        value: String,
    ) -> wasmtime::Result<()> {
        if !self.view_mut(&r)?.set_header(name.clone(), value) {
            tracing::warn!(policy = %self.label, header = %name, "policy tried to set an invalid or protected header");
        }
        Ok(())
    }
    fn add_header(
        &mut self,
        r: Resource<RequestView>,
        name: String,
        value: String,
    ) -> wasmtime::Result<()> {
        if !self.view_mut(&r)?.add_header(name.clone(), value) {
            tracing::warn!(policy = %self.label, header = %name, "policy tried to add an invalid or protected header");
        }
        Ok(())
    }
    fn remove_header(&mut self, r: Resource<RequestView>, name: String) -> wasmtime::Result<()> {
        self.view_mut(&r)?.remove_header(name);
        Ok(())
    }
    fn set_request_uri(
        &mut self,
        r: Resource<RequestView>,
        uri: String,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.view_mut(&r)?.set_request_uri(uri))
    }
    fn authenticated_user(
        &mut self,
        r: Resource<RequestView>,
        realm: String,
    ) -> wasmtime::Result<Option<String>> {
        Ok(self.view_mut(&r)?.authenticated_user(&realm))
    }
    fn drop(&mut self, r: Resource<RequestView>) -> wasmtime::Result<()> {
        // The host owns requests; the guest only ever borrows them.
        let _ = r;
        Ok(())
    }
}

impl log::Host for StoreData {
    fn log(&mut self, level: Level, message: String) {
        let policy = &self.label;
        match level {
            Level::Trace => tracing::trace!(%policy, "{message}"),
            Level::Debug => tracing::debug!(%policy, "{message}"),
            Level::Info => tracing::info!(%policy, "{message}"),
            Level::Warn => tracing::warn!(%policy, "{message}"),
            Level::Error => tracing::error!(%policy, "{message}"),
        }
    }
}

impl metrics::Host for StoreData {
    fn counter_add(&mut self, name: String, labels: Vec<(String, String)>, value: u64) {
        self.shared.counters.add(&name, &labels, value);
    }
}

impl StoreData {
    /// One `kv` call: timed (it is not guest time), and on failure either
    /// the error, for the policy to decide (fail open), or a trap that the
    /// router answers with 503 (fail closed). The backend has counted and
    /// logged the failure.
    fn kv_call<T>(
        &mut self,
        call: impl FnOnce(&dyn State) -> Result<T, StateError>,
    ) -> wasmtime::Result<Result<T, KvError>> {
        let started = Instant::now();
        let result = call(&*self.shared.kv);
        self.call.in_kv += started.elapsed();
        match (result, self.shared.on_kv_error) {
            (Ok(v), _) => Ok(Ok(v)),
            (Err(e), OnError::Open) => Ok(Err(kv_error(e))),
            (Err(e), OnError::Closed) => {
                self.call.state_failure = Some(e.clone());
                Err(wasmtime::Error::new(e))
            }
        }
    }
}

fn kv_error(e: StateError) -> KvError {
    match e {
        StateError::Unavailable(m) => KvError::Unavailable(m),
        StateError::Timeout(m) => KvError::Timeout(m),
    }
}

impl kv::Host for StoreData {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, KvError>> {
        self.kv_call(|kv| kv.get(key.as_bytes()))
    }
    fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u32>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        self.kv_call(|kv| kv.set(key.as_bytes(), value, ttl(ttl_ms)))
    }
    fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u32>,
    ) -> wasmtime::Result<Result<i64, KvError>> {
        self.kv_call(|kv| kv.increment(key.as_bytes(), delta, ttl(ttl_ms)))
    }
    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl_ms: Option<u32>,
    ) -> wasmtime::Result<Result<bool, KvError>> {
        self.kv_call(|kv| kv.compare_and_swap(key.as_bytes(), expected, new, ttl(ttl_ms)))
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), KvError>> {
        self.kv_call(|kv| kv.delete(key.as_bytes()))
    }
}

impl registrar::Host for StoreData {
    fn lookup(&mut self, aor: String) -> wasmtime::Result<Result<Vec<types::Target>, KvError>> {
        let registrar = self.shared.registrar.clone();
        self.kv_call(|_| crate::registrar_glue::lookup(&registrar, &aor))
    }
}

fn ttl(ttl_ms: Option<u32>) -> Option<std::time::Duration> {
    ttl_ms.map(|ms| std::time::Duration::from_millis(u64::from(ms)))
}

impl clock::Host for StoreData {
    fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn random_u64(&mut self) -> u64 {
        rand::random()
    }
}
