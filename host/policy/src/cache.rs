//! The on-disk cache of compiled policies (`Engine::precompile`d code).

use std::path::Path;
use wasmtime::component::Component;
use wasmtime::Engine;

/// Loads compiled code written by [`store`]; `None` when absent or unusable.
pub(crate) fn load(engine: &Engine, file: &Path) -> Option<Component> {
    if !file.exists() {
        return None;
    }
    // SAFETY: deserializing runs native code produced by Cranelift. The file
    // lives in our own cache directory, is named by the SHA-256 of the source
    // component and the engine's compatibility hash, and is only ever written
    // by `store` below from `Component::serialize`; wasmtime additionally
    // checks its header against this engine's configuration.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize_file(engine, file) };
    match component {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "ignoring unusable compiled policy cache entry");
            let _ = std::fs::remove_file(file);
            None
        }
    }
}

/// Writes compiled code atomically (temp file + rename); failures only cost a recompile later.
pub(crate) fn store(component: &Component, file: &Path) {
    let Ok(bytes) = component.serialize() else {
        return;
    };
    let Some(dir) = file.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        tracing::warn!(dir = %dir.display(), "cannot create the policy cache directory");
        return;
    }
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, file))
        .is_err()
    {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(file = %file.display(), "cannot write the policy cache");
    }
}
