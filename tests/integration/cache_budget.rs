//! The cache's byte budgets (issue 16: the on-disk cache grew without limit): set in the admin's
//! Settings form, held by evicting the least recently stored or hit answers from disk and
//! memory, per proxy and in total, and still held after a restart.
//!
//! The mock answers these requests with `{"echo":<request length>}`, and every prompt here has
//! the same length, so every entry has the same size and a budget of k entries is exact.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::accounts::{Session, settings_form};
use super::proxied::{self, Answer, Call};
use super::support::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, accepts_connections, id_of, port_of};
use super::upstream::MockUpstream;

/// How long the background writer (and the eviction after its batch) may take.
const SETTLE: Duration = Duration::from_secs(10);

struct Proxy {
    id: i64,
    base: String,
    port: u16,
}

async fn proxy(app: &TestApp, mock: &MockUpstream, name: &str) -> Proxy {
    let created = app
        .create(
            json!({"name": name, "provider": "openai", "upstream_url": format!("{}/v1", mock.url)}),
        )
        .await;
    assert_eq!(created["status"], "running", "{created}");
    Proxy {
        id: id_of(&created),
        base: format!("http://127.0.0.1:{}", port_of(&created)),
        port: port_of(&created),
    }
}

/// A unique chat request; `n` from 100 to 999, so all have the same length.
fn prompt(n: u32) -> Call {
    assert!((100..1000).contains(&n));
    Call::post(
        "/v1/chat/completions",
        &format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"prompt {n}"}}]}}"#
        ),
    )
}

/// Sends prompt `n`, expecting `cache` (HIT or MISS); returns the entry's key.
async fn ask(proxy: &Proxy, n: u32, cache: &str) -> String {
    let answer: Answer = proxied::send(&proxy.base, &prompt(n)).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "prompt {n}: {}",
        answer.text()
    );
    assert_eq!(
        answer.header("x-cache"),
        Some(cache),
        "prompt {n}: {}",
        answer.text()
    );
    answer
        .header("x-cache-key")
        .expect("an X-Cache-Key")
        .to_owned()
}

async fn info(app: &TestApp, proxy: &Proxy) -> Value {
    let (status, info) = app.get(&format!("/api/proxies/{}/cache", proxy.id)).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    info
}

/// The keys stored for a proxy, read straight from the app's SQLite file.
fn stored_keys(app: &TestApp, proxy: &Proxy) -> BTreeSet<String> {
    use diesel::{Connection, QueryDsl, RunQueryDsl, SqliteConnection};
    diesel::table! { cache_entries (id) { id -> Integer, proxy_id -> Integer, cache_key -> Text, } }
    let path = app.data_dir().join("rubberduck.sqlite3");
    let mut conn =
        SqliteConnection::establish(path.to_str().expect("utf-8 path")).expect("open the database");
    use diesel::ExpressionMethods;
    cache_entries::table
        .filter(cache_entries::proxy_id.eq(i32::try_from(proxy.id).expect("small id")))
        .select(cache_entries::cache_key)
        .load::<String>(&mut conn)
        .expect("read the keys")
        .into_iter()
        .collect()
}

/// Waits (bounded) until the proxy's stored keys are exactly `keys` and the API counts
/// `evictions`; returns the proxy's cache info then.
async fn settle(
    app: &TestApp,
    proxy: &Proxy,
    keys: &[&String],
    evictions: u64,
    what: &str,
) -> Value {
    let wanted: BTreeSet<String> = keys.iter().map(|k| (*k).clone()).collect();
    let deadline = Instant::now() + SETTLE;
    loop {
        let stored = stored_keys(app, proxy);
        let info = info(app, proxy).await;
        if stored == wanted && info["evictions"] == evictions {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: stored {} keys, wanted {}; missing {:?}, extra {:?}; {info}",
            stored.len(),
            wanted.len(),
            wanted.difference(&stored).collect::<Vec<_>>(),
            stored.difference(&wanted).collect::<Vec<_>>(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts the admin's settings form with these budgets; asserts it was saved.
async fn set_budgets(admin: &Session, total: &str, per_proxy: &str) -> String {
    let reply = admin
        .post_form(
            "/settings",
            &settings_form(&[
                ("cache_total_budget", total),
                ("cache_proxy_budget", per_proxy),
            ]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(!reply.body.contains("field-error"), "{}", reply.body);
    reply.body
}

/// The size of one entry: stores prompt `n` on `proxy` and reads the bytes.
async fn entry_size(app: &TestApp, proxy: &Proxy, n: u32) -> (String, u64) {
    let key = ask(proxy, n, "MISS").await;
    let info = settle(app, proxy, &[&key], 0, "the first entry").await;
    let bytes = info["bytes"].as_u64().expect("bytes");
    assert!(bytes > 0, "{info}");
    (key, bytes)
}

#[actix_web::test]
async fn a_proxy_over_its_budget_loses_its_least_recently_used_entries_only() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;

    // The defaults are shown, and a budget that is not a size is refused with a message.
    let page = admin.get("/settings").await;
    assert!(page.body.contains(r#"value="1 GB""#), "{}", page.body);
    assert!(page.body.contains(r#"value="256 MB""#), "{}", page.body);
    let refused = admin
        .post_form(
            "/settings",
            &settings_form(&[("cache_proxy_budget", "lots")]),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .body
            .contains("The cache budget per proxy must be a size such as 512 MB"),
        "{}",
        refused.body
    );

    let busy = proxy(&app, &mock, "budget-busy").await;
    let quiet = proxy(&app, &mock, "budget-quiet").await;
    let (first, size) = entry_size(&app, &busy, 100).await;
    // Room for five entries per proxy.
    let page = set_budgets(&admin, "0", &format!("{} B", 5 * size)).await;
    assert!(
        page.contains(&format!(r#"value="{} B""#, 5 * size)),
        "the saved budget is shown: {page}"
    );

    let mut quiet_keys = Vec::new();
    for n in 200..204 {
        quiet_keys.push(ask(&quiet, n, "MISS").await);
    }
    let mut busy_keys = vec![first];
    for n in 101..104 {
        busy_keys.push(ask(&busy, n, "MISS").await);
    }
    settle(
        &app,
        &busy,
        &busy_keys.iter().collect::<Vec<_>>(),
        0,
        "four entries",
    )
    .await;
    // Used again: now more recent than 101–103.
    ask(&busy, 100, "HIT").await;
    for n in 104..107 {
        busy_keys.push(ask(&busy, n, "MISS").await);
    }
    // Seven entries, room for five: 101 and 102 go, the hit one stays.
    let [k100, k101, k102, k103, k104, k105, k106] = &busy_keys[..] else {
        panic!("seven keys");
    };
    let after = settle(
        &app,
        &busy,
        &[k100, k103, k104, k105, k106],
        2,
        "the least recently used two are evicted",
    )
    .await;
    assert_eq!(after["entries"], 5, "{after}");
    assert_eq!(after["bytes"], 5 * size, "{after}");
    let stored = stored_keys(&app, &busy);
    assert!(
        !stored.contains(k101) && !stored.contains(k102),
        "the oldest are gone"
    );

    // Gone from memory too: asking again goes upstream; and the hit one is still a hit.
    ask(&busy, 100, "HIT").await;
    let upstream_before = mock.requests().len();
    let again = ask(&busy, 101, "MISS").await;
    assert_eq!(&again, k101);
    assert_eq!(mock.requests().len(), upstream_before + 1, "went upstream");
    // 101 is back; the least recently used now is 103.
    let after = settle(
        &app,
        &busy,
        &[k100, k101, k104, k105, k106],
        3,
        "storing 101 again evicts 103",
    )
    .await;
    assert_eq!(after["bytes"], 5 * size, "{after}");

    // The other proxy was never over its own budget and lost nothing.
    let untouched = settle(
        &app,
        &quiet,
        &quiet_keys.iter().collect::<Vec<_>>(),
        0,
        "the other proxy",
    )
    .await;
    assert_eq!(untouched["entries"], 4, "{untouched}");
    for n in 200..204 {
        ask(&quiet, n, "HIT").await;
    }

    // The proxies' cards count what is left.
    let dashboard = admin.get("/proxies").await;
    assert!(
        dashboard.body.contains("5 entries ·") && dashboard.body.contains("4 entries ·"),
        "{}",
        dashboard.body
    );
    // Settings shows the usage of the whole cache.
    let page = admin.get("/settings").await;
    assert!(
        page.body.contains("Now stored: 9 entries") && page.body.contains("3 evicted"),
        "{}",
        page.body
    );
    app.shutdown().await;
    mock.stop().await;
}

#[actix_web::test]
async fn the_total_budget_evicts_across_proxies_and_holds_after_a_restart() {
    let mock = MockUpstream::start().await;
    let mut app = TestApp::start().await;
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let older = proxy(&app, &mock, "total-older").await;
    let newer = proxy(&app, &mock, "total-newer").await;
    let (k100, size) = entry_size(&app, &older, 100).await;
    // Room for four entries in all, none per proxy.
    let budget = format!("{} B", 4 * size);
    set_budgets(&admin, &budget, "0").await;

    let k101 = ask(&older, 101, "MISS").await;
    let k102 = ask(&older, 102, "MISS").await;
    settle(&app, &older, &[&k100, &k101, &k102], 0, "three entries").await;
    let mut newer_keys = Vec::new();
    for n in 200..203 {
        newer_keys.push(ask(&newer, n, "MISS").await);
    }
    // Six entries, room for four: the other proxy's oldest two go.
    settle(&app, &older, &[&k102], 2, "the oldest two of all").await;
    let refs: Vec<&String> = newer_keys.iter().collect();
    settle(&app, &newer, &refs, 0, "the newest proxy keeps all").await;

    app.restart().await;
    assert!(accepts_connections(older.port), "the proxy runs again");
    let admin = Session::sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let page = admin.get("/settings").await;
    assert!(
        page.body.contains(&format!(r#"value="{budget}""#)),
        "the budget is kept: {}",
        page.body
    );
    assert_eq!(info(&app, &older).await["entries"], 1);
    assert_eq!(info(&app, &newer).await["entries"], 3);
    // Still held after the restart: one more entry evicts the oldest of all.
    newer_keys.push(ask(&newer, 203, "MISS").await);
    settle(&app, &older, &[], 1, "after the restart").await;
    let refs: Vec<&String> = newer_keys.iter().collect();
    let kept = settle(&app, &newer, &refs, 0, "the newest four").await;
    assert_eq!(kept["bytes"], 4 * size, "{kept}");

    // A smaller budget evicts when saved, not at the next write.
    set_budgets(&admin, &format!("{} B", 2 * size), "0").await;
    let kept = info(&app, &newer).await;
    assert_eq!(kept["entries"], 2, "{kept}");
    assert_eq!(kept["evictions"], 2, "{kept}");
    assert_eq!(
        stored_keys(&app, &newer),
        newer_keys[2..].iter().cloned().collect()
    );

    // A budget lowered while the app was down (or left over from before budgets existed) is
    // applied as it starts: nothing over budget is loaded.
    app.shutdown().await;
    {
        use diesel::{Connection, RunQueryDsl, SqliteConnection};
        let path = app.data_dir().join("rubberduck.sqlite3");
        let mut conn = SqliteConnection::establish(path.to_str().expect("utf-8 path"))
            .expect("open the database");
        let changed = diesel::sql_query(format!(
            "UPDATE settings SET value = '{size}' WHERE key = 'cache_total_bytes'"
        ))
        .execute(&mut conn)
        .expect("lower the saved budget");
        assert_eq!(changed, 1, "the budget was saved under cache_total_bytes");
    }
    app.restart().await;
    assert_eq!(stored_keys(&app, &newer), [newer_keys[3].clone()].into());
    let last = info(&app, &newer).await;
    assert_eq!(last["entries"], 1, "{last}");
    assert_eq!(last["bytes"], size, "{last}");
    ask(&newer, 203, "HIT").await;
    ask(&newer, 202, "MISS").await;
    app.shutdown().await;
    mock.stop().await;
}
