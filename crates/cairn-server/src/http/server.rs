//! The node's HTTP listener (`--http-listen`): routes and serving.
//!
//! | path            | answer                                                      |
//! |-----------------|-------------------------------------------------------------|
//! | `/health/live`  | 200 `live` while the process serves                          |
//! | `/health/ready` | 200 `ready`, or 503 with the reason (`health.rs`)            |
//! | `/metrics`      | Prometheus text format (`crate::metrics`)                    |
//! | `/api/status`   | the cluster status as JSON (`CairnApi::cluster_status`)      |
//! | `/`             | the status page (`status_page.rs`)                           |
//!
//! Only GET is served, no request body is read, and the answers that cost something
//! (metrics, status) are bounded: at most `EXPENSIVE_REQUESTS_MAX` run at once, others get
//! 503 at once.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::CairnApi;
use crate::http::{health, status_page};
use crate::metrics::NodeMetrics;

/// Metrics scrapes and status renderings served at once.
pub const EXPENSIVE_REQUESTS_MAX: usize = 4;

#[derive(Clone)]
struct HttpState {
    api: Arc<CairnApi>,
    metrics: Arc<NodeMetrics>,
    expensive: Arc<Semaphore>,
}

/// Serves the HTTP listener on `listener` until `stopping` is cancelled.
pub async fn serve(
    listener: TcpListener,
    api: Arc<CairnApi>,
    metrics: Arc<NodeMetrics>,
    stopping: CancellationToken,
) -> std::io::Result<()> {
    let state = HttpState { api, metrics, expensive: Arc::new(Semaphore::new(EXPENSIVE_REQUESTS_MAX)) };
    let router = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/api/status", get(status_json))
        .route("/", get(status_html))
        .with_state(state);
    axum::serve(listener, router).with_graceful_shutdown(stopping.cancelled_owned()).await
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn busy() -> Response {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("busy: {EXPENSIVE_REQUESTS_MAX} requests of this kind are being served\n"),
    )
}

async fn live() -> Response {
    text(StatusCode::OK, "live\n".to_owned())
}

async fn ready(State(state): State<HttpState>) -> Response {
    match health::not_ready_reason(&state.api.host) {
        None => text(StatusCode::OK, "ready\n".to_owned()),
        Some(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
    }
}

async fn metrics_text(State(state): State<HttpState>) -> Response {
    let Ok(_permit) = state.expensive.try_acquire() else { return busy() };
    match state.metrics.encode() {
        Ok(body) => {
            ([(header::CONTENT_TYPE, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)], body).into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot encode the metrics");
            text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n".to_owned())
        }
    }
}

/// How long the status waits for the consumer groups of other nodes.
const GROUPS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

async fn status_json(State(state): State<HttpState>) -> Response {
    let Ok(_permit) = state.expensive.try_acquire() else { return busy() };
    match status_page::json(&state.api.cluster_status_with_groups(GROUPS_WAIT).await) {
        Ok(body) => {
            ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body).into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot encode the cluster status");
            text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the cluster status\n".to_owned())
        }
    }
}

async fn status_html(State(state): State<HttpState>) -> Response {
    let Ok(_permit) = state.expensive.try_acquire() else { return busy() };
    match status_page::render(&state.api.cluster_status_with_groups(GROUPS_WAIT).await) {
        Ok(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], body)
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot render the status page");
            text(StatusCode::INTERNAL_SERVER_ERROR, "cannot render the status page\n".to_owned())
        }
    }
}
