//! The Python venv that runs roomkit (`tests/roomkit/backend.py`): a Python
//! 3.12 or newer found, `tests/roomkit/requirements.txt` installed, reused
//! while neither changes. Shared by `tests/roomkit.rs` and `tests/front_door.rs`.
//!
//! Python comes from `VIADUCT_PYTHON`, else `python3.13`/`python3.12`/
//! `python3` on the PATH, else the newest `$PYENV_ROOT/versions/3.N*` (or
//! `~/.pyenv/versions`). Without one the caller fails, saying so; it never
//! skips. The venv is `<workspace>/target/roomkit-venv`
//! (`VIADUCT_ROOMKIT_VENV` overrides); its first build needs PyPI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use crate::workspace_root;

/// `(major, minor, patch)` of an interpreter, or `None` if it does not run
/// (a pyenv shim for a version that is not selected exits 127).
fn python_version(python: &Path) -> Option<(u32, u32, u32)> {
    let out = Command::new(python)
        .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

fn new_enough(v: (u32, u32, u32)) -> bool {
    (v.0, v.1) >= (3, 12)
}

/// pyenv's version directories with Python >= 3.12, newest first.
fn pyenv_candidates() -> Vec<PathBuf> {
    let roots: Vec<PathBuf> = [
        std::env::var_os("PYENV_ROOT").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")),
        Some(PathBuf::from("/root/.pyenv")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut found: Vec<((u32, u32, u32), PathBuf)> = Vec::new();
    for root in roots {
        let Ok(entries) = fs::read_dir(root.join("versions")) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Plain CPython builds only: "3.12.1", not "3.13.0t" or "pypy3.10".
            let nums: Vec<u32> = name.split('.').map_while(|p| p.parse().ok()).collect();
            if nums.len() != 3 || !new_enough((nums[0], nums[1], nums[2])) {
                continue;
            }
            let bin = entry.path().join("bin/python3");
            if bin.is_file() {
                found.push(((nums[0], nums[1], nums[2]), bin));
            }
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// An interpreter >= 3.12 and its version. Panics, listing what was tried,
/// when there is none: this test must fail loudly, never pass by skipping.
fn find_python() -> (PathBuf, (u32, u32, u32)) {
    if let Some(p) = std::env::var_os("VIADUCT_PYTHON").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        match python_version(&p) {
            Some(v) if new_enough(v) => return (p, v),
            v => panic!(
                "VIADUCT_PYTHON={} is not a working Python >= 3.12 (version {v:?}); \
                 roomkit[sip] needs 3.12 or newer",
                p.display()
            ),
        }
    }
    let mut tried = Vec::new();
    let on_path = ["python3.13", "python3.12", "python3"].map(PathBuf::from);
    for p in on_path.into_iter().chain(pyenv_candidates()) {
        let v = python_version(&p);
        match v {
            Some(v) if new_enough(v) => return (p, v),
            _ => tried.push(format!("{} ({v:?})", p.display())),
        }
    }
    panic!(
        "\n\n*** NO PYTHON >= 3.12 FOUND: the roomkit end-to-end test cannot run and FAILS. ***\n\
         roomkit[sip] needs Python 3.12 or newer. Tried: {}.\n\
         Install one (e.g. `pyenv install 3.12`) or point VIADUCT_PYTHON at it.\n",
        tried.join(", ")
    );
}

fn run_logged(cmd: &mut Command) -> Output {
    let line = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {line}: {e}"))
}

fn output_text(out: &Output) -> String {
    format!(
        "{}\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        out.status,
        last_lines(&String::from_utf8_lossy(&out.stdout), 30),
        last_lines(&String::from_utf8_lossy(&out.stderr), 30)
    )
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The venv's interpreter, with `tests/roomkit/requirements.txt` installed.
///
/// Reused when its marker file holds the same interpreter and requirements;
/// otherwise built next to it and renamed into place (a venv's `bin/python`
/// finds its `site-packages` from its own location, so the rename is safe as
/// long as only `bin/python` is used), so an interrupted or concurrent build
/// never leaves a half-installed venv under the final name.
pub fn roomkit_python() -> PathBuf {
    // The tests of this file run in parallel and share one venv: on a fresh
    // machine they would all build it at once, under the same name. Build it once.
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(prepare_roomkit_python).clone()
}

fn prepare_roomkit_python() -> PathBuf {
    let requirements_path = workspace_root().join("tests/roomkit/requirements.txt");
    let requirements = fs::read_to_string(&requirements_path)
        .unwrap_or_else(|e| panic!("{}: {e}", requirements_path.display()));
    let venv = std::env::var_os("VIADUCT_ROOMKIT_VENV")
        .filter(|v| !v.is_empty())
        .map(|v| workspace_root().join(PathBuf::from(v)))
        .unwrap_or_else(|| workspace_root().join("target/roomkit-venv"));
    let (base, version) = find_python();
    let marker_text = format!(
        "python {} {}.{}.{}\n{requirements}",
        base.display(),
        version.0,
        version.1,
        version.2
    );
    let marker = |dir: &Path| dir.join(".viaduct-requirements");
    let ready = |dir: &Path| {
        dir.join("bin/python").is_file()
            && fs::read_to_string(marker(dir)).is_ok_and(|m| m == marker_text)
    };
    if ready(&venv) {
        return venv.join("bin/python");
    }

    let started = Instant::now();
    let parent = venv.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
    let mut build_name = venv.file_name().unwrap_or_default().to_os_string();
    build_name.push(format!(".build-{}", std::process::id()));
    let build = parent.join(build_name);
    let _ = fs::remove_dir_all(&build);
    eprintln!(
        "roomkit: creating the venv {} with {} ({}.{}.{}) and installing {}",
        venv.display(),
        base.display(),
        version.0,
        version.1,
        version.2,
        requirements_path.display()
    );
    let out = run_logged(Command::new(&base).arg("-m").arg("venv").arg(&build));
    if !out.status.success() {
        let _ = fs::remove_dir_all(&build);
        panic!(
            "`{} -m venv {}` failed: {}",
            base.display(),
            build.display(),
            output_text(&out)
        );
    }
    let out = run_logged(
        Command::new(build.join("bin/python"))
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .args(["--no-input", "--timeout", "60", "-r"])
            .arg(&requirements_path),
    );
    if !out.status.success() {
        let _ = fs::remove_dir_all(&build);
        panic!(
            "\n\n*** installing roomkit FAILED (pip install -r {}): the roomkit end-to-end \
             test cannot run. ***\n{}\n",
            requirements_path.display(),
            output_text(&out)
        );
    }
    fs::write(marker(&build), &marker_text)
        .unwrap_or_else(|e| panic!("{}: {e}", marker(&build).display()));
    let _ = fs::remove_dir_all(&venv);
    if let Err(e) = fs::rename(&build, &venv) {
        // Another test run renamed its own build into place first.
        let _ = fs::remove_dir_all(&build);
        assert!(
            ready(&venv),
            "cannot move {} into place: {e}",
            build.display()
        );
    }
    eprintln!(
        "roomkit: venv ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    venv.join("bin/python")
}
