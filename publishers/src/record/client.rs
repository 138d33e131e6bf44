//! `framebus-recorder record` (and `framebus record`, which runs it): asks
//! a running recorder for a recording, waits for its end, and saves the
//! MP4 with the index at the front. The pre-roll comes from the
//! recorder's memory, so the recorder must be running.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::config::RecordArgs;
use super::server::API;
use crate::common::auth::Credentials;

/// Why `record` failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not `http://host:port`.
    #[error("--api {0:?}: give http://HOST:PORT")]
    Url(String),
    /// Could not connect or talk HTTP.
    #[error("cannot reach the recorder at {url}: {why} (is framebus-recorder running?)")]
    Connect {
        /// The API address.
        url: String,
        /// Why.
        why: String,
    },
    /// The recorder said no.
    #[error("the recorder answered {status}: {message}")]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// Its error message.
        message: String,
    },
    /// The recording failed.
    #[error("recording {id} failed: {why}")]
    Failed {
        /// Its id.
        id: String,
        /// The recorder's error.
        why: String,
    },
    /// The output file.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

struct Api {
    url: String,
    authority: String,
    auth: Option<String>,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let connect = |why: String| ClientError::Connect {
            url: self.url.clone(),
            why,
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| connect(e.to_string()))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| connect(e.to_string()))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        if let Some(a) = &self.auth {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let body = match body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| connect(e.to_string()))?;
        let res = send
            .send_request(req)
            .await
            .map_err(|e| connect(e.to_string()))?;
        let status = res.status();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| connect(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let (status, bytes) = self.call(method, path, body).await?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = v.get("error").and_then(Value::as_str).map_or_else(
                || String::from_utf8_lossy(&bytes).into_owned(),
                str::to_string,
            );
            return Err(ClientError::Refused { status, message });
        }
        Ok(v)
    }
}

/// Runs `record`; prints a summary line on success.
pub async fn record(args: RecordArgs) -> Result<(), ClientError> {
    let authority = args
        .api
        .strip_prefix("http://")
        .map(|a| a.trim_end_matches('/').to_string())
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| ClientError::Url(args.api.clone()))?;
    let creds: Option<Credentials> = args.auth.clone().or_else(|| {
        std::env::var(framebus::contract::env::RECORDER_AUTH)
            .ok()
            .and_then(|v| v.parse().ok())
    });
    let api = Api {
        url: args.api.clone(),
        authority,
        auth: creds.map(|c| {
            let raw = format!("{}:{}", c.user, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        }),
    };
    let rec = api
        .json(
            Method::POST,
            API,
            Some(json!({
                "stream": args.stream.name(),
                "duration": args.duration.as_secs_f64(),
                "preroll": args.preroll.as_secs_f64(),
            })),
        )
        .await?;
    let id = rec
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "recording {id}: {:.1} s with {:.1} s of pre-roll",
        args.duration.as_secs_f64(),
        args.preroll.as_secs_f64()
    );
    tokio::time::sleep(args.duration).await;
    let one = format!("{API}/{id}");
    let done = loop {
        let r = api.json(Method::GET, &one, None).await?;
        match r.get("state").and_then(Value::as_str) {
            Some("waiting" | "recording") => tokio::time::sleep(Duration::from_millis(200)).await,
            Some("failed") => {
                return Err(ClientError::Failed {
                    id,
                    why: r
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                })
            }
            _ => break r,
        }
    };
    let (status, bytes) = api
        .call(Method::GET, &format!("{one}/file.mp4"), None)
        .await?;
    if !status.is_success() {
        return Err(ClientError::Refused {
            status,
            message: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let out = |source| ClientError::Output {
        path: args.output.display().to_string(),
        source,
    };
    let mut f = std::fs::File::create(&args.output).map_err(out)?;
    f.write_all(&bytes).map_err(out)?;
    f.sync_all().map_err(out)?;
    println!(
        "{}: {} frames, {:.3} s, first frame {:.3} s before the request",
        args.output.display(),
        done.get("frames").and_then(Value::as_u64).unwrap_or(0),
        done.get("duration_s")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        done.get("preroll_s").and_then(Value::as_f64).unwrap_or(0.0),
    );
    Ok(())
}
