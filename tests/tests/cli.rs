//! The `viaduct` command line as an operator uses it: `viaduct check`.

use std::fs;
use std::process::Command;

use viaduct_e2e::{viaduct_bin, workspace_root};

fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("viaduct.toml");
    fs::write(&path, config).expect("write config");
    let out = Command::new(viaduct_bin())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run viaduct check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The shipped example config is valid.
#[test]
fn check_accepts_the_example_config() {
    let example = workspace_root().join("examples/viaduct.toml");
    let config = fs::read_to_string(&example).expect("examples/viaduct.toml");
    let (ok, text) = check(&config);
    assert!(ok, "viaduct check rejected {}:\n{text}", example.display());
}

/// An empty file is valid: every field has a default.
#[test]
fn check_accepts_an_empty_config() {
    let (ok, text) = check("");
    assert!(ok, "viaduct check rejected an empty config:\n{text}");
}

/// Invalid configs exit non-zero and the message names the problem.
#[test]
fn check_rejects_invalid_configs() {
    let cases = [
        ("[timers]\nt1_ms = \"fast\"\n", "t1_ms"),
        ("[server]\nlisten = [\"sctp:127.0.0.1:5060\"]\n", "sctp"),
        ("[routing]\ntargets = [\"not a uri\"]\n", "not a uri"),
        ("[timers]\nt1_ms = 0\n", "t1_ms"),
        ("[serverr]\nworkers = 1\n", "serverr"),
        ("[server\n", "parse error"),
    ];
    let mut failures = Vec::new();
    for (config, word) in cases {
        let (ok, text) = check(config);
        if ok || !text.to_ascii_lowercase().contains(word) {
            failures.push(format!(
                "config {config:?}: exit ok = {ok}, message should name {word:?}:\n{text}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `check --policy` loads the policy as a reload would: a real component
/// passes, garbage and a component of another world are refused by name.
#[test]
fn check_loads_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let config = dir.path().join("viaduct.toml");
    fs::write(
        &config,
        format!("[policy]\ncache_dir = {:?}\n", cache.display().to_string()),
    )
    .expect("write config");
    let garbage = dir.path().join("garbage.wasm");
    fs::write(&garbage, b"not wasm at all").expect("write garbage");
    let policies = workspace_root().join("target/policies");
    let cases = [
        (policies.join("x-room-id.wasm"), true, "policy ok"),
        (garbage, false, "compiling"),
        (
            policies.join("bad-world.wasm"),
            false,
            "not a viaduct:policy@0.3.0 policy",
        ),
    ];
    for (policy, want_ok, word) in cases {
        let out = Command::new(viaduct_bin())
            .args(["check", "--config"])
            .arg(&config)
            .arg("--policy")
            .arg(&policy)
            .output()
            .expect("run viaduct check");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.success(),
            want_ok,
            "{}: {text}",
            policy.display()
        );
        assert!(
            text.to_ascii_lowercase()
                .contains(&word.to_ascii_lowercase()),
            "{}: {text}",
            policy.display()
        );
    }
}
