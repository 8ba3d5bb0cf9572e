//! Liveness and readiness, and the HTTP listener serving them with the metrics.
//!
//! `/healthz` answers 200 while the process runs its loop. `/readyz` answers 200 when the
//! service can make progress: the broker is reachable, no partition is being restored, and
//! every assigned partition is caught up (or nothing is assigned); otherwise 503 with the
//! reason. The same listener serves the query API ([`crate::api`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Result, RuntimeError};

/// What readiness depends on, updated by the service loop and the Kafka callbacks.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    started: bool,
    broker_down: bool,
    restoring: usize,
    /// Assigned partitions and whether each is caught up.
    partitions: BTreeMap<i32, bool>,
    stopping: bool,
}

impl Health {
    /// A fresh, not yet started service.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn with<T>(&self, f: impl FnOnce(&mut HealthState) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The service loop is running.
    pub fn set_started(&self) {
        self.with(|s| s.started = true);
    }

    /// The service is shutting down: no longer ready.
    pub fn set_stopping(&self) {
        self.with(|s| s.stopping = true);
    }

    /// Whether any broker is reachable (from the client's statistics and error callbacks).
    pub fn set_broker_down(&self, down: bool) {
        self.with(|s| s.broker_down = down);
    }

    /// A restore began (`true`) or ended (`false`).
    pub fn set_restoring(&self, restoring: bool) {
        self.with(|s| {
            if restoring {
                s.restoring += 1;
            } else {
                s.restoring = s.restoring.saturating_sub(1);
            }
        });
    }

    /// The assigned partitions and whether each is caught up.
    pub fn set_partitions(&self, partitions: BTreeMap<i32, bool>) {
        self.with(|s| s.partitions = partitions);
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        self.with(|s| {
            if !s.started {
                Err("starting".to_string())
            } else if s.stopping {
                Err("shutting down".to_string())
            } else if s.broker_down {
                Err("no broker is reachable".to_string())
            } else if s.restoring > 0 {
                Err(format!("restoring {} partition(s)", s.restoring))
            } else {
                let behind: Vec<String> = s
                    .partitions
                    .iter()
                    .filter(|(_, caught_up)| !**caught_up)
                    .map(|(p, _)| p.to_string())
                    .collect();
                if behind.is_empty() {
                    Ok(())
                } else {
                    Err(format!("catching up on partition(s) {}", behind.join(", ")))
                }
            }
        })
    }
}

#[derive(Clone)]
struct Endpoints {
    health: Arc<Health>,
    metrics: PrometheusHandle,
}

/// The service's HTTP listener, bound but not serving yet: its address is known (port 0
/// picks one), so the query API can advertise it before the first request.
pub struct Listener {
    listener: tokio::net::TcpListener,
    /// The bound address.
    pub addr: SocketAddr,
}

/// Binds `addr`; fails at once if it cannot.
pub async fn bind(addr: SocketAddr) -> Result<Listener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Io {
            context: format!("binding the metrics listener to {addr}"),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| RuntimeError::Io {
        context: "reading the metrics listener's address".into(),
        source,
    })?;
    Ok(Listener {
        listener,
        addr: bound,
    })
}

/// Serves `/metrics`, `/healthz` and `/readyz`, and the service's query API routes
/// (`api`, see [`crate::api`]), on `listener` until `shutdown` is cancelled.
pub fn serve(
    listener: Listener,
    health: Arc<Health>,
    metrics: PrometheusHandle,
    api: Router,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_page))
        .with_state(Endpoints { health, metrics })
        .merge(api);
    tokio::spawn(async move {
        let served = axum::serve(listener.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    })
}

async fn metrics_page(State(e): State<Endpoints>) -> impl IntoResponse {
    e.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        e.metrics.render(),
    )
}

async fn ready_page(State(e): State<Endpoints>) -> impl IntoResponse {
    match e.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_service() {
        let h = Health::new();
        assert_eq!(h.readiness(), Err("starting".into()));
        h.set_started();
        assert_eq!(h.readiness(), Ok(()), "idle with no assignment is ready");
        h.set_partitions(BTreeMap::from([(0, true), (1, false)]));
        assert_eq!(h.readiness(), Err("catching up on partition(s) 1".into()));
        h.set_partitions(BTreeMap::from([(0, true), (1, true)]));
        h.set_restoring(true);
        assert!(h.readiness().unwrap_err().starts_with("restoring"));
        h.set_restoring(false);
        h.set_broker_down(true);
        assert_eq!(h.readiness(), Err("no broker is reachable".into()));
        h.set_broker_down(false);
        assert_eq!(h.readiness(), Ok(()));
        h.set_stopping();
        assert_eq!(h.readiness(), Err("shutting down".into()));
    }
}
