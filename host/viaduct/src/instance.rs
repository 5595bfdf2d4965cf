//! Which instance of a cluster this process is: its id (`[server]
//! instance_id`, else `VIADUCT_INSTANCE_ID`, else `<hostname>-<pid>`), and
//! the log format that ends every line with `instance_id=<id>`, so logs
//! merged from several instances still say where each line came from.
//! Metrics carry it in `viaduct_instance_info` and `/status` in `instance_id`.
//!
//! The id is a formatter field rather than a root span: workers, the tokio
//! runtime and blocking threads each start outside any span, while every
//! event goes through the one formatter.

use anyhow::{bail, Result};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Longest id accepted (a Kubernetes pod name is at most 63 characters).
pub const MAX_LEN: usize = 128;

/// Ids are label values and log tokens: letters, digits, `.`, `_`, `-`, `:`.
pub fn check_id(id: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if id.is_empty() || id.len() > MAX_LEN || !id.chars().all(ok) {
        bail!(
            "server.instance_id {id:?}: 1 to {MAX_LEN} letters, digits, '.', '_', '-' or ':' \
             (it goes into every log line and a metric label)"
        );
    }
    Ok(())
}

/// `<hostname>-<pid>`: stable for the life of the process, distinct for two
/// processes on one host (a restart is a new instance: its calls are new too).
pub fn default_id() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| sanitized(h.trim()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "viaduct".into());
    format!("{host}-{}", std::process::id())
}

/// Anything outside [`check_id`]'s alphabet becomes `_`.
fn sanitized(s: &str) -> String {
    s.chars()
        .take(MAX_LEN - 12)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The inner format's line, with ` instance_id=<id>` before its newline.
#[derive(Debug)]
pub struct Stamped<F> {
    inner: F,
    suffix: String,
}

impl<F> Stamped<F> {
    /// Wraps `inner` (set its ANSI choice on it: the line is formatted into a buffer first).
    pub fn new(inner: F, id: &str) -> Self {
        Stamped {
            inner,
            suffix: format!(" instance_id={id}"),
        }
    }
}

impl<S, N, F> FormatEvent<S, N> for Stamped<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.strip_suffix('\n').unwrap_or(&line);
        writer.write_str(body)?;
        writer.write_str(&self.suffix)?;
        writer.write_char('\n')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_label_safe() {
        for good in ["sip-0", "viaduct-7d9f-abc12", "a", "host.example:5060_1"] {
            check_id(good).unwrap();
        }
        for bad in ["", "a b", "a\nb", "é", "x=y", &"a".repeat(MAX_LEN + 1)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        let id = default_id();
        check_id(&id).unwrap();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert_eq!(sanitized("my host/1"), "my_host_1");
    }

    #[test]
    fn every_line_ends_with_the_id() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .event_format(Stamped::new(
                tracing_subscriber::fmt::format().with_ansi(false),
                "vd-a",
            ))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(port = 5061, "listening");
            tracing::warn!("second");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with("listening port=5061 instance_id=vd-a"),
            "{text}"
        );
        assert!(lines[1].ends_with("second instance_id=vd-a"), "{text}");
    }
}
