//! The operator's HTTP endpoints: `/metrics` (OpenMetrics text), `/healthz` (the process serves
//! requests) and `/readyz` (it has reached the API server). Probes and scrapes only; no writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::clock::Clock;
use crate::operator::metrics::Metrics;

/// Readiness shared between start-up and the `/readyz` handler.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    health: Arc<Health>,
}

/// The endpoints as a router, for `serve` and for tests.
pub fn router(metrics: Arc<Metrics>, clock: Arc<dyn Clock>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            metrics,
            clock,
            health,
        })
}

/// Serves the endpoints on `listener` for the life of the process.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    health: Arc<Health>,
) {
    if let Err(err) = axum::serve(listener, router(metrics, clock, health)).await {
        tracing::error!(error = %err, "the metrics and health server stopped");
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    match state.metrics.encode(state.clock.now()) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.health.is_ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the Kubernetes API server has not answered yet\n",
        )
            .into_response()
    }
}
