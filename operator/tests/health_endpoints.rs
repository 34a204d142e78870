//! The operator's /healthz and /readyz over real HTTP: liveness fails while
//! a reconcile is wedged (and recovers when it finishes), readiness holds
//! only while this replica leads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use innoxide_operator::metrics::Metrics;
use innoxide_operator::run::http_routes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const STALL: Duration = Duration::from_millis(400);

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn liveness_fails_while_a_reconcile_is_wedged_and_readiness_is_the_leaders() {
    let metrics = Arc::new(Metrics::new());
    let leading = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = http_routes(metrics.clone(), leading.clone(), STALL);
    tokio::spawn(async move { axum::serve(listener, routes).await });

    assert_eq!(
        get(addr, "/healthz").await.0,
        200,
        "an idle operator is alive"
    );
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(
        (status, body.trim()),
        (503, "standby"),
        "a standby is not ready"
    );

    // A reconcile that never returns: alive at first, wedged after the stall timeout.
    let wedged = metrics.reconcile("backup");
    assert_eq!(get(addr, "/healthz").await.0, 200);
    tokio::time::sleep(STALL + Duration::from_millis(200)).await;
    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("backup reconcile has been running"), "{body}");
    drop(wedged);
    assert_eq!(
        get(addr, "/healthz").await.0,
        200,
        "alive again once it returns"
    );

    leading.cancel();
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!((status, body.trim()), (200, "leading"));
    assert!(
        get(addr, "/metrics")
            .await
            .1
            .contains("innoxide_operator_reconciles_total")
    );
}
