//! The config file for CI, through the real binary: `serve --config FILE` declares proxies at
//! start (created or updated by name, owned by the first admin, started, the file winning over
//! edits), and `check --config FILE` validates without starting anything.

use std::ops::RangeInclusive;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::binary::{self, Server};
use super::support::{TEST_TOKEN, accepts_connections, authorized, id_of, port_block};

impl Server {
    /// `rubberduck serve --config FILE` on a data directory, up to its startup line.
    fn start(config: &Path, data_dir: &Path, ports: &RangeInclusive<u16>) -> Server {
        Self::start_with(&["--config".as_ref(), config.as_os_str()], data_dir, ports)
    }

    fn start_with(
        args: &[&std::ffi::OsStr],
        data_dir: &Path,
        ports: &RangeInclusive<u16>,
    ) -> Server {
        binary::start_with(
            args,
            data_dir,
            &format!("{}-{}", ports.start(), ports.end()),
        )
    }

    async fn get(&self, path: &str) -> Value {
        let mut response = authorized(awc::Client::new().get(format!("{}{path}", self.dashboard)))
            .send()
            .await
            .expect("reaches the dashboard");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().limit(1 << 20).await.expect("JSON")
    }

    async fn send(&self, method: &str, path: &str, body: Value) -> Value {
        let client = awc::Client::new();
        let url = format!("{}{path}", self.dashboard);
        let request = match method {
            "PATCH" => client.patch(url),
            "PUT" => client.put(url),
            _ => client.post(url),
        };
        let mut response = authorized(request)
            .send_json(&body)
            .await
            .expect("reaches the dashboard");
        assert!(
            response.status().is_success(),
            "{method} {path}: {}",
            response.status()
        );
        response.json().await.expect("JSON")
    }

    /// The proxies, by name.
    async fn proxy(&self, name: &str) -> Value {
        let list = self.get("/api/proxies").await;
        list.as_array()
            .expect("a list")
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no proxy “{name}” in {list}"))
    }

    /// Stops it with SIGTERM; returns what it printed after its startup line.
    fn terminate(self) -> Vec<String> {
        binary::terminate(self)
    }
}

/// Runs the binary to its end (at most 30 s) in `dir`.
fn run(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rubberduck"))
        .args(args)
        .current_dir(dir)
        .env("RUBBERDUCK_BOOTSTRAP_TOKEN", TEST_TOKEN)
        .env_remove("RUBBERDUCK_CONFIG")
        .env_remove("RUBBERDUCK_DATA_DIR")
        .env_remove("RUBBERDUCK_PROXY_PORTS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("waits").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rubberduck {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn canonical(path: &Path) -> String {
    std::fs::canonicalize(path)
        .expect("exists")
        .to_string_lossy()
        .into_owned()
}

#[actix_web::test]
async fn a_config_file_starts_its_proxies_owned_by_the_admin() {
    let work = tempfile::tempdir().expect("tmp");
    let data = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(work.path().join("fixtures")).expect("fixtures dir");
    let ports = port_block();
    let chat_port = *ports.start();
    let config = work.path().join("rubberduck.toml");
    std::fs::write(
        &config,
        format!(
            r#"# Proxies of the test suite
[[proxy]]
name = "chat"
provider = "openai"
port = {chat_port}
upstream_url = "emulator"
tags = ["ci"]

[proxy.emulator]
ttft_ms = 0

[proxy.failures.rate_limit]
enabled = true
requests_per_minute = 1000

[[proxy]]
name = "claude"
provider = "anthropic"
description = "replays the recorded answers"

[proxy.cache]
mode = "replay_only"
fixtures_dir = "./fixtures"
"#
        ),
    )
    .expect("config written");

    let server = Server::start(&config, data.path(), &ports);
    let list = server.get("/api/proxies").await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let chat = server.proxy("chat").await;
    let claude = server.proxy("claude").await;
    for proxy in [&chat, &claude] {
        assert_eq!(proxy["status"], "running", "{proxy}");
        assert_eq!(proxy["declared_in"], canonical(&config), "{proxy}");
    }
    assert_eq!(chat["port"], chat_port);
    assert_eq!(chat["upstream_url"], "emulator");
    assert_eq!(chat["tags"], json!(["ci"]));
    assert_eq!(chat["emulator"]["ttft_ms"], 0);
    assert!(
        ports.contains(&u16::try_from(claude["port"].as_u64().unwrap_or(0)).unwrap_or(0)),
        "a port left out is assigned from the range: {claude}"
    );
    assert_eq!(claude["description"], "replays the recorded answers");
    assert_eq!(claude["cache"]["mode"], "replay_only");
    assert_eq!(
        claude["cache"]["fixtures_dir"],
        format!("{}/fixtures", canonical(work.path())),
        "relative to the file, made absolute"
    );
    let failures = server
        .get(&format!("/api/proxies/{}/failure-config", id_of(&chat)))
        .await;
    assert_eq!(failures["rate_limit"]["enabled"], true, "{failures}");
    assert_eq!(failures["rate_limit"]["requests_per_minute"], 1000);

    let mut answer = awc::Client::new()
        .post(format!("http://127.0.0.1:{chat_port}/v1/chat/completions"))
        .send_json(
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .expect("the emulator proxy answers");
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.expect("JSON");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|text| !text.is_empty()),
        "{body}"
    );
    let output = server.terminate();
    assert!(
        output.iter().all(|line| !line.contains("ERROR")),
        "{output:?}"
    );

    // Owned by the first admin: read from the database the binary left.
    let pool = rubberduck::db::open(data.path()).expect("the database opens");
    let (admin, rows) = rubberduck::db::run(&pool, |conn| {
        Ok((
            rubberduck::db::accounts::first_admin(conn)?,
            rubberduck::db::proxies::all(conn)?,
        ))
    })
    .await
    .expect("readable");
    let admin = admin.expect("an admin");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|row| row.owner_id == Some(admin.id)),
        "every declared proxy belongs to the first admin"
    );
}

#[actix_web::test]
async fn a_restart_with_an_edited_file_updates_its_proxies_by_name() {
    let work = tempfile::tempdir().expect("tmp");
    let data = tempfile::tempdir().expect("tmp");
    let ports = port_block();
    let first = *ports.start();
    let config = work.path().join("rubberduck.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[proxy]]
name = "chat"
provider = "openai"
port = {first}
upstream_url = "emulator"
description = "first"

[[proxy]]
name = "extra"
provider = "deepseek"
port = {}
"#,
            first + 1
        ),
    )
    .expect("config written");
    let server = Server::start(&config, data.path(), &ports);
    let chat_id = id_of(&server.proxy("chat").await);
    let extra_id = id_of(&server.proxy("extra").await);
    // Edits through the API, which the file overrides at the next start.
    let edited = server
        .send(
            "PATCH",
            &format!("/api/proxies/{chat_id}"),
            json!({"description": "edited in the dashboard", "tags": ["by-hand"], "log_requests": false}),
        )
        .await;
    assert_eq!(edited["description"], "edited in the dashboard");
    server
        .send(
            "PUT",
            &format!("/api/proxies/{chat_id}/failure-config"),
            json!({"errors": {"enabled": true, "rates": {"500": 0.5}}}),
        )
        .await;
    server.terminate();

    let moved = first + 2;
    std::fs::write(
        &config,
        format!(
            r#"[[proxy]]
name = "chat"
provider = "openai"
port = {moved}
upstream_url = "emulator"
description = "second"
"#
        ),
    )
    .expect("config edited");
    let server = Server::start(&config, data.path(), &ports);
    let list = server.get("/api/proxies").await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(2),
        "updated by name, not created again: {list}"
    );
    let chat = server.proxy("chat").await;
    assert_eq!(id_of(&chat), chat_id, "the same proxy");
    assert_eq!(chat["description"], "second", "the file wins over the edit");
    assert_eq!(chat["tags"], json!([]), "what the file leaves out is reset");
    assert_eq!(chat["log_requests"], true);
    assert_eq!(chat["port"], moved);
    assert_eq!(chat["status"], "running");
    assert!(accepts_connections(moved));
    let failures = server
        .get(&format!("/api/proxies/{chat_id}/failure-config"))
        .await;
    assert_eq!(
        failures["errors"]["enabled"], false,
        "the file's failure config (none) replaces the one set through the API: {failures}"
    );
    let extra = server.proxy("extra").await;
    assert_eq!(id_of(&extra), extra_id, "kept");
    assert_eq!(extra["declared_in"], Value::Null, "no longer declared");
    assert_eq!(extra["status"], "running", "it was running, and runs on");
    server.terminate();
}

#[test]
fn check_accepts_a_good_file_and_names_every_problem_of_bad_ones() {
    let dir = tempfile::tempdir().expect("tmp");
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).expect("written");
    };
    std::fs::create_dir(dir.path().join("fixtures")).expect("fixtures dir");
    write(
        "good.toml",
        r#"[[proxy]]
name = "chat"
provider = "openai"
upstream_url = "emulator"

[[proxy]]
name = "claude"
provider = "anthropic"
cache = { mode = "replay_only", fixtures_dir = "fixtures" }
"#,
    );
    let good = run(dir.path(), &["check", "--config", "good.toml"]);
    assert!(good.status.success(), "{}", printed(&good));
    assert_eq!(
        String::from_utf8_lossy(&good.stdout),
        "good.toml: 2 proxies OK\n"
    );
    assert!(
        !dir.path().join("data").exists(),
        "check touches no data directory"
    );

    let bad = [
        (
            "syntax.toml",
            "[[proxy]]\nname = \"chat\"\nprovider = \"openai\"\nport = = 8101\n",
            vec!["syntax.toml:4: "],
        ),
        (
            "unknown.toml",
            "[[proxy]]\nname = \"chat\"\nprovider = \"openai\"\n\ncahce = { enabled = false }\n",
            vec!["unknown.toml:5: proxy “chat”: cahce: unknown field `cahce`"],
        ),
        (
            "mode.toml",
            "# CI\n[[proxy]]\nname = \"chat\"\nprovider = \"openai\"\n\n[proxy.cache]\nmode = \"replay\"\n",
            vec![
                "mode.toml:7: proxy “chat”: cache.mode: unknown cache mode “replay”; expected read_write, replay_only or refresh",
            ],
        ),
        (
            "duplicate.toml",
            "[[proxy]]\nname = \"chat\"\nprovider = \"openai\"\n\n[[proxy]]\nname = \"chat\"\nprovider = \"deepseek\"\n",
            vec![
                "duplicate.toml:6: proxy “chat”: name: another proxy of this file, on line 2, is named “chat” too",
            ],
        ),
        (
            "several.toml",
            "[[proxy]]\nname = \"chat\"\nprovider = \"openai\"\nport = 80\n\n[[proxy]]\nname = \"claude\"\nprovider = \"anthropic\"\n[proxy.cache]\nmode = \"replay_only\"\nfixtures_dir = \"missing\"\n",
            vec![
                "several.toml:4: proxy “chat”: port: port must be a whole number from 8001 to 9999",
                "several.toml:11: proxy “claude”: cache.fixtures_dir: there is no directory",
            ],
        ),
    ];
    for (name, text, expected) in bad {
        write(name, text);
        let output = run(dir.path(), &["check", "--config", name]);
        let said = printed(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {said}");
        for line in expected {
            assert!(
                said.lines().any(|said| said.starts_with(line)),
                "{name}: no line starting with {line:?} in:\n{said}"
            );
        }
    }
    assert!(!dir.path().join("data").exists());
}

#[actix_web::test]
async fn serve_refuses_a_bad_file_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let ports = port_block();
    let port = *ports.start();
    std::fs::write(
        dir.path().join("rubberduck.toml"),
        format!(
            "[[proxy]]\nname = \"chat\"\nprovider = \"openai\"\nport = {port}\nupstream_url = \"emulator\"\n\n[proxy.cache]\nmode = \"replay\"\n"
        ),
    )
    .expect("written");
    let range = format!("{}-{}", ports.start(), ports.end());
    let output = run(
        dir.path(),
        &[
            "serve",
            "--config",
            "rubberduck.toml",
            "--data-dir",
            "data",
            "--bind",
            "127.0.0.1:0",
            "--proxy-ports",
            &range,
        ],
    );
    let said = printed(&output);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains(
            "rubberduck.toml:8: proxy “chat”: cache.mode: unknown cache mode “replay”; expected read_write, replay_only or refresh"
        ),
        "{said}"
    );
    assert!(!said.contains("dashboard on"), "nothing started: {said}");
    assert!(
        !dir.path().join("data").exists(),
        "the data directory is not touched"
    );
    assert!(!accepts_connections(port));
}

#[actix_web::test]
async fn serve_names_the_line_of_a_port_an_undeclared_proxy_holds() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let ports = port_block();
    let port = *ports.start();
    let server = Server::start_with(&[], &data, &ports);
    let manual = server
        .send(
            "POST",
            "/api/proxies",
            json!({"name": "manual", "provider": "openai", "port": port}),
        )
        .await;
    assert_eq!(manual["port"], port);
    server.terminate();

    std::fs::write(
        dir.path().join("rubberduck.toml"),
        format!("[[proxy]]\nname = \"chat\"\nprovider = \"openai\"\nport = {port}\n"),
    )
    .expect("written");
    let range = format!("{}-{}", ports.start(), ports.end());
    let output = run(
        dir.path(),
        &[
            "serve",
            "--config",
            "rubberduck.toml",
            "--data-dir",
            "data",
            "--bind",
            "127.0.0.1:0",
            "--proxy-ports",
            &range,
        ],
    );
    let said = printed(&output);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "rubberduck.toml:4: proxy “chat”: port: port {port} is already used by proxy “manual”"
        )),
        "{said}"
    );
    assert!(!said.contains("dashboard on"), "{said}");
}
