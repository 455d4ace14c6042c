//! Starting Rubberduck for a test, and talking to it.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use awc::http::StatusCode;
use rubberduck::app::{self, Running};
use rubberduck::config::{Secret, ServeArgs};
use serde_json::Value;

/// Tests run in parallel in one process, so each app gets its own block of proxy ports; two apps
/// never race for the same port.
const FIRST_TEST_PORT: u16 = 9000;
// Below the kernel's ephemeral range (32768+), so no outgoing connection takes a test port.
const LAST_TEST_PORT: u16 = 19_999;
const PORTS_PER_APP: u16 = 10;
static NEXT_PORT: AtomicU16 = AtomicU16::new(FIRST_TEST_PORT);

pub fn port_block() -> RangeInclusive<u16> {
    port_block_of(PORTS_PER_APP)
}

pub fn port_block_of(size: u16) -> RangeInclusive<u16> {
    let first = NEXT_PORT.fetch_add(size, Ordering::Relaxed);
    assert!(
        first.saturating_add(size - 1) <= LAST_TEST_PORT,
        "out of test ports"
    );
    first..=first + size - 1
}

/// The API token every test app accepts (registered through `RUBBERDUCK_BOOTSTRAP_TOKEN`).
pub const TEST_TOKEN: &str = "rd_test-bootstrap-token";
/// The first admin of every test app.
pub const ADMIN_EMAIL: &str = "admin@localhost";
pub const ADMIN_PASSWORD: &str = "test admin password";

/// Adds the test app's API token to a request.
pub fn authorized(request: awc::ClientRequest) -> awc::ClientRequest {
    request.insert_header(("Authorization", format!("Bearer {TEST_TOKEN}")))
}

pub struct TestApp {
    pub running: Option<Running>,
    pub base: String,
    pub ports: RangeInclusive<u16>,
    args: ServeArgs,
    _data: tempfile::TempDir,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with_ports(port_block()).await
    }

    pub async fn start_with_ports(ports: RangeInclusive<u16>) -> Self {
        Self::start_configured(ports, |_| {}).await
    }

    /// Starts with test defaults that `adjust` may change (timeouts, limits).
    pub async fn start_configured(
        ports: RangeInclusive<u16>,
        adjust: impl FnOnce(&mut ServeArgs),
    ) -> Self {
        let data = tempfile::tempdir().expect("temp data dir");
        let mut args = ServeArgs {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            data_dir: data.path().join("data"),
            proxy_host: Ipv4Addr::LOCALHOST.into(),
            proxy_ports: ports.clone(),
            stop_timeout: 5,
            admin_password: Some(Secret(ADMIN_PASSWORD.to_owned())),
            bootstrap_token: Some(Secret(TEST_TOKEN.to_owned())),
            ..ServeArgs::default()
        };
        adjust(&mut args);
        let running = app::start(&args).await.expect("rubberduck starts");
        TestApp {
            base: format!("http://{}", running.admin_addr),
            running: Some(running),
            ports,
            args,
            _data: data,
        }
    }

    /// Stops the whole app the way Ctrl-C does, then starts it again on the same data.
    pub async fn restart(&mut self) {
        self.shutdown().await;
        let running = app::start(&self.args).await.expect("rubberduck restarts");
        self.base = format!("http://{}", running.admin_addr);
        self.running = Some(running);
    }

    pub async fn shutdown(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    /// The app's data directory (holds the SQLite file).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.args.data_dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(authorized(awc::Client::new().get(self.url(path))), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(
            authorized(awc::Client::new().post(self.url(path))),
            Some(body),
        )
        .await
    }

    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        send(authorized(awc::Client::new().post(self.url(path))), None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(
            authorized(awc::Client::new().patch(self.url(path))),
            Some(body),
        )
        .await
    }

    pub async fn put_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let request = authorized(awc::Client::new().put(self.url(path)));
        let (status, reply) = send(request, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {reply}");
        (status, reply)
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        send(authorized(awc::Client::new().delete(self.url(path))), None).await
    }

    /// Creates a proxy through the API and returns its JSON, asserting a 201.
    pub async fn create(&self, body: Value) -> Value {
        let (status, proxy) = self.post("/api/proxies", body).await;
        assert_eq!(status, StatusCode::CREATED, "{proxy}");
        proxy
    }

    /// Pages with the test app's API token (sessions and CSRF have tests of their own).
    pub async fn get_text(&self, path: &str, htmx: bool) -> (StatusCode, String) {
        let mut request = authorized(awc::Client::new().get(self.url(path)));
        if htmx {
            request = request.insert_header(("HX-Request", "true"));
        }
        let mut response = request.send().await.expect("request sent");
        let body = response.body().limit(4 << 20).await.expect("body read");
        (
            response.status(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// Posts a form as a browser would, without following the redirect.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)], htmx: bool) -> FormReply {
        let client = awc::Client::builder().disable_redirects().finish();
        let mut request = authorized(client.post(self.url(path)));
        if htmx {
            request = request.insert_header(("HX-Request", "true"));
        }
        let mut response = request.send_form(&form).await.expect("form posted");
        let body = response.body().limit(4 << 20).await.expect("body read");
        FormReply {
            status: response.status(),
            headers: response.headers().clone(),
            html: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

pub struct FormReply {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub html: String,
}

impl FormReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(request: awc::ClientRequest, body: Option<Value>) -> (StatusCode, Value) {
    let mut response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    }
    .expect("request sent");
    let bytes = response.body().limit(4 << 20).await.expect("body read");
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!("not JSON: {}", String::from_utf8_lossy(&bytes));
        })
    };
    (response.status(), json)
}

pub fn accepts_connections(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

pub fn port_of(proxy: &Value) -> u16 {
    proxy["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("proxy JSON has a port")
}

pub fn id_of(proxy: &Value) -> i64 {
    proxy["id"].as_i64().expect("proxy JSON has an id")
}

/// A response read whole, for tests that look at its status, headers and body together.
pub struct Reply {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub async fn read<S>(mut response: awc::ClientResponse<S>) -> Reply
    where
        S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
            + Unpin,
    {
        let body = response.body().limit(4 << 20).await.expect("body read");
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The value a `Set-Cookie` gives the cookie `name`, unless it is being cleared.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.headers
            .get_all("set-cookie")
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix(prefix.as_str()).map(str::to_owned))
            .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
            .filter(|value| !value.is_empty())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

/// A client that shows redirects instead of following them.
pub fn no_redirects() -> awc::Client {
    awc::Client::builder().disable_redirects().finish()
}

/// A proxy's requests in flight, as the API reports them.
pub async fn in_flight(app: &TestApp, proxy_id: i64) -> u64 {
    let (status, json) = app.get(&format!("/api/proxies/{proxy_id}")).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json["in_flight"]
        .as_u64()
        .unwrap_or_else(|| panic!("no in_flight in {json}"))
}

/// Waits until a proxy has `wanted` requests in flight; fails after `within`.
pub async fn wait_for_in_flight(app: &TestApp, proxy_id: i64, wanted: u64, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let now = in_flight(app, proxy_id).await;
        if now == wanted {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "in_flight stayed {now}, not {wanted}, for {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
