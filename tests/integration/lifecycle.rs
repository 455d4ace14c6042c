//! Proxy servers: start, stop, restart, ports, and surviving a restart of the app.

use std::net::{Ipv4Addr, TcpListener};

use awc::http::StatusCode;
use serde_json::{Value, json};

use super::support::{TestApp, accepts_connections, id_of, port_of};

#[actix_web::test]
async fn start_stop_restart_and_force_stop() {
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Life", "provider": "openai"}))
        .await;
    let (id, port) = (id_of(&proxy), port_of(&proxy));
    assert_eq!(proxy["status"], "running");
    assert!(accepts_connections(port));

    let (status, stopped) = app.post_empty(&format!("/api/proxies/{id}/stop")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stopped["status"], "stopped");
    assert!(!accepts_connections(port), "a stopped proxy frees its port");

    let (_, started) = app.post_empty(&format!("/api/proxies/{id}/start")).await;
    assert_eq!(started["status"], "running");
    assert!(
        accepts_connections(port),
        "a stopped port is reusable at once"
    );
    let (_, again) = app.post_empty(&format!("/api/proxies/{id}/start")).await;
    assert_eq!(
        again["status"], "running",
        "starting a running proxy is harmless"
    );

    let (_, restarted) = app.post_empty(&format!("/api/proxies/{id}/restart")).await;
    assert_eq!(restarted["status"], "running");
    assert!(accepts_connections(port));

    let (_, forced) = app
        .post_empty(&format!("/api/proxies/{id}/stop?force=true"))
        .await;
    assert_eq!(forced["status"], "stopped");
    assert!(!accepts_connections(port));

    let (status, _) = app
        .post_empty(&format!("/api/proxies/{id}/stop?force=maybe"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.shutdown().await;
}

#[actix_web::test]
async fn a_port_busy_in_the_os_is_an_error_status_not_a_failure() {
    let mut app = TestApp::start().await;
    let busy_port = *app.ports.start() + 3;
    let squatter =
        TcpListener::bind((Ipv4Addr::LOCALHOST, busy_port)).expect("test binds the port");

    let (status, proxy) = app
        .post(
            "/api/proxies",
            json!({"name": "Squatted", "provider": "openai", "port": busy_port}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{proxy}");
    let warning = proxy["warning"]
        .as_str()
        .expect("a warning about the busy port");
    assert!(warning.contains(&busy_port.to_string()), "{warning}");
    assert_eq!(proxy["status"], "error");
    assert_eq!(
        proxy["last_error"],
        format!("port {busy_port} is already in use by another program")
    );

    let id = id_of(&proxy);
    let (status, retried) = app.post_empty(&format!("/api/proxies/{id}/start")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retried["status"], "error");
    assert!(
        retried["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&busy_port.to_string()))
    );

    // The app keeps working around the failed proxy.
    assert_eq!(app.get("/healthz").await.1["status"], "ok");
    let other = app
        .create(json!({"name": "Other", "provider": "openai"}))
        .await;
    assert_eq!(other["status"], "running");

    drop(squatter);
    let (_, started) = app.post_empty(&format!("/api/proxies/{id}/start")).await;
    assert_eq!(started["status"], "running");
    assert_eq!(started["last_error"], Value::Null);
    app.shutdown().await;
}

#[actix_web::test]
async fn auto_assignment_skips_ports_in_use() {
    let mut app = TestApp::start().await;
    let first = *app.ports.start();
    let _squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, first)).expect("test binds the port");
    let a = app
        .create(json!({"name": "a", "provider": "openai", "start": false}))
        .await;
    let b = app.create(json!({"name": "b", "provider": "openai"})).await;
    assert_eq!(port_of(&a), first + 1, "busy in the OS is skipped");
    assert_eq!(
        port_of(&b),
        first + 2,
        "a stopped proxy's port stays reserved for it"
    );
    app.shutdown().await;
}

#[actix_web::test]
async fn an_edited_port_applies_on_restart() {
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Mover", "provider": "openai"}))
        .await;
    let (id, old_port) = (id_of(&proxy), port_of(&proxy));
    let new_port = *app.ports.end();

    let (status, edited) = app
        .patch(&format!("/api/proxies/{id}"), json!({"port": new_port}))
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["port"], new_port);
    assert_eq!(edited["listening_port"], old_port);
    assert!(
        accepts_connections(old_port),
        "still serving on the old port"
    );

    let (_, restarted) = app.post_empty(&format!("/api/proxies/{id}/restart")).await;
    assert_eq!(restarted["listening_port"], new_port);
    assert!(accepts_connections(new_port));
    assert!(!accepts_connections(old_port));
    app.shutdown().await;
}

#[actix_web::test]
async fn restarting_the_app_brings_running_proxies_back() {
    let mut app = TestApp::start().await;
    let running = app
        .create(json!({"name": "Keeps running", "provider": "anthropic"}))
        .await;
    let stopped = app
        .create(json!({"name": "Stays stopped", "provider": "openai", "start": false}))
        .await;
    let edited = app
        .create(json!({"name": "Edited", "provider": "openai"}))
        .await;
    app.patch(
        &format!("/api/proxies/{}", id_of(&edited)),
        json!({"description": "saved", "tags": ["x"]}),
    )
    .await;

    app.shutdown().await;
    assert!(
        !accepts_connections(port_of(&running)),
        "shutdown stops every proxy"
    );
    assert!(!accepts_connections(port_of(&edited)));

    app.restart().await;
    let (_, after) = app.get(&format!("/api/proxies/{}", id_of(&running))).await;
    assert_eq!(after["status"], "running");
    assert!(accepts_connections(port_of(&running)));
    let (_, after) = app.get(&format!("/api/proxies/{}", id_of(&stopped))).await;
    assert_eq!(after["status"], "stopped");
    assert!(!accepts_connections(port_of(&stopped)));
    let (_, after) = app.get(&format!("/api/proxies/{}", id_of(&edited))).await;
    assert_eq!(after["status"], "running");
    assert_eq!(after["description"], "saved");
    assert_eq!(after["tags"], json!(["x"]));
    assert_eq!(app.get("/healthz").await.1["running_proxies"], 2);
    app.shutdown().await;
}

#[actix_web::test]
async fn duplicate_copies_settings_onto_a_free_port() {
    let mut app = TestApp::start().await;
    let proxy = app
        .create(json!({"name": "Original", "provider": "bedrock", "aws_region": "eu-west-1", "tags": ["t"]}))
        .await;
    let mut response = awc::Client::builder()
        .disable_redirects()
        .finish()
        .post(app.url(&format!("/proxies/{}/duplicate", id_of(&proxy))))
        .insert_header((
            "Authorization",
            format!("Bearer {}", super::support::TEST_TOKEN),
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let _ = response.body().await;
    let (_, list) = app.get("/api/proxies").await;
    let copy = &list[1];
    assert_eq!(copy["name"], "Original (copy)");
    assert_eq!(copy["provider"], "bedrock");
    assert_eq!(copy["aws_region"], "eu-west-1");
    assert_eq!(copy["tags"], json!(["t"]));
    assert_eq!(copy["status"], "stopped");
    assert_ne!(copy["port"], proxy["port"]);
    app.shutdown().await;
}
