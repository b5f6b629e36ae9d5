//! A test OTLP/HTTP receiver: an axum server on `127.0.0.1:0` that accepts
//! `POST /v1/metrics` and `POST /v1/traces` in protobuf, decodes them with the official
//! `opentelemetry-proto` definitions and keeps every request for assertions.
//!
//! It runs on its own thread and runtime, so exporters that block the caller (the reqwest
//! blocking client, `force_flush`) cannot deadlock against it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

#[derive(Default)]
struct Received {
    metrics: Vec<ExportMetricsServiceRequest>,
    traces: Vec<ExportTraceServiceRequest>,
    /// Requests that were not protobuf or did not decode: (path, reason).
    rejected: Vec<(String, String)>,
}

/// A running receiver. It stops with the process.
#[derive(Clone)]
pub struct OtlpReceiver {
    /// `http://127.0.0.1:PORT`, the base URL to give an exporter.
    pub url: String,
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

type Shared = Arc<Mutex<Received>>;

fn is_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-protobuf"))
}

fn protobuf(body: Vec<u8>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        body,
    )
}

async fn metrics(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let mut s = s.lock().unwrap();
    if !is_protobuf(&headers) {
        s.rejected
            .push(("/v1/metrics".into(), format!("content type {headers:?}")));
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    match ExportMetricsServiceRequest::decode(body) {
        Ok(req) => {
            s.metrics.push(req);
            protobuf(ExportMetricsServiceResponse::default().encode_to_vec()).into_response()
        }
        Err(e) => {
            s.rejected.push(("/v1/metrics".into(), e.to_string()));
            StatusCode::BAD_REQUEST.into_response()
        }
    }
}

async fn traces(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let mut s = s.lock().unwrap();
    if !is_protobuf(&headers) {
        s.rejected
            .push(("/v1/traces".into(), format!("content type {headers:?}")));
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(req) => {
            s.traces.push(req);
            protobuf(ExportTraceServiceResponse::default().encode_to_vec()).into_response()
        }
        Err(e) => {
            s.rejected.push(("/v1/traces".into(), e.to_string()));
            StatusCode::BAD_REQUEST.into_response()
        }
    }
}

impl OtlpReceiver {
    /// Binds `127.0.0.1:0` and serves on a thread of its own.
    pub fn start() -> OtlpReceiver {
        let received: Shared = Arc::default();
        let app = Router::new()
            .route("/v1/metrics", post(metrics))
            .route("/v1/traces", post(traces))
            .with_state(received.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    tx.send(listener.local_addr().unwrap()).unwrap();
                    axum::serve(listener, app).await.unwrap();
                });
            })
            .unwrap();
        let addr = rx.recv().unwrap();
        OtlpReceiver {
            url: format!("http://{addr}"),
            addr,
            received,
        }
    }

    pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.received.lock().unwrap().metrics.clone()
    }

    pub fn traces(&self) -> Vec<ExportTraceServiceRequest> {
        self.received.lock().unwrap().traces.clone()
    }

    pub fn rejected(&self) -> Vec<(String, String)> {
        self.received.lock().unwrap().rejected.clone()
    }
}

/// An OTLP attribute value as a string (`"true"`, `"42"`, `"text"`), for assertions.
pub fn value_str(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Attributes as sorted `(key, value)` strings.
pub fn attrs(kvs: &[KeyValue]) -> Vec<(String, String)> {
    let mut out: Vec<_> = kvs
        .iter()
        .map(|kv| (kv.key.clone(), value_str(&kv.value)))
        .collect();
    out.sort();
    out
}
