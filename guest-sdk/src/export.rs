//! The glue behind [`export_policy!`](crate::export_policy): not part of the API.

use std::cell::OnceCell;
use std::thread::LocalKey;

use crate::wit;
use crate::{Config, Decision, Policy, Request};

/// Where [`export_policy!`](crate::export_policy) keeps the instance's policy value.
pub type Slot<P> = LocalKey<OnceCell<P>>;

/// `init`: builds the policy once per instance.
pub fn init<P: Policy>(
    slot: &'static Slot<P>,
    config: Vec<(String, String)>,
) -> Result<(), String> {
    let config = Config::from_iter(config);
    let policy = P::init(&config)?;
    slot.with(|cell| {
        cell.set(policy)
            .map_err(|_| "init called twice".to_string())
    })
}

/// `on-request`: the policy's decision, or 500 before `init`.
pub fn on_request<P: Policy>(slot: &'static Slot<P>, req: &wit::Request) -> wit::Decision {
    let req = Request::__from_raw(req);
    slot.with(|cell| match cell.get() {
        Some(policy) => policy.on_request(&req),
        None => not_initialised(),
    })
    .__into_raw()
}

/// `on-failure`: the policy's decision, or 500 before `init`.
pub fn on_failure<P: Policy>(
    slot: &'static Slot<P>,
    req: &wit::Request,
    code: u16,
) -> wit::Decision {
    let req = Request::__from_raw(req);
    slot.with(|cell| match cell.get() {
        Some(policy) => policy.on_failure(&req, code),
        None => not_initialised(),
    })
    .__into_raw()
}

fn not_initialised() -> Decision {
    Decision::reject(500, "policy not initialised")
}

/// Exports a [`Policy`](crate::Policy) type as the policy of this component.
///
/// Write it once, at the root of a `cdylib` crate:
///
/// ```no_run
/// use viaduct_guest_sdk::{export_policy, Config, Decision, Policy, Request};
///
/// struct RelayAll;
///
/// impl Policy for RelayAll {
///     fn init(_config: &Config) -> Result<Self, String> {
///         Ok(RelayAll)
///     }
///     fn on_request(&self, _req: &Request) -> Decision {
///         Decision::relay()
///     }
/// }
///
/// export_policy!(RelayAll);
/// # fn main() {}
/// ```
///
/// It builds one value per Wasm instance in `init` and keeps it for every
/// later call; a call that comes before `init` is answered 500.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[allow(unsafe_code)]
        const _: () = {
            ::std::thread_local! {
                static __VIADUCT_POLICY: ::std::cell::OnceCell<$policy> =
                    const { ::std::cell::OnceCell::new() };
            }

            struct __ViaductPolicyExport;

            impl $crate::wit::Guest for __ViaductPolicyExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::export::init::<$policy>(&__VIADUCT_POLICY, config)
                }

                fn on_request(req: &$crate::wit::Request) -> $crate::wit::Decision {
                    $crate::export::on_request::<$policy>(&__VIADUCT_POLICY, req)
                }

                fn on_failure(req: &$crate::wit::Request, code: u16) -> $crate::wit::Decision {
                    $crate::export::on_failure::<$policy>(&__VIADUCT_POLICY, req, code)
                }
            }

    $crate::wit::__export_policy_world!(__ViaductPolicyExport with_types_in $crate::wit);
        };
    };
}
