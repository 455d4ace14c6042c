//! Forwarding: the client's bytes go upstream unchanged (bar hop-by-hop headers and provider
//! credentials), and the upstream's answer streams back without buffering.

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, web};
use awc::error::{ConnectError, SendRequestError};
use futures_util::StreamExt;

use super::error::GatewayError;
use super::headers::{connection_tokens, forwardable, returnable};
use super::{InFlight, ProxyServerState, UpstreamSettings};
use crate::providers::UpstreamRequest;
use crate::registry::spec::ProxySpec;

pub fn upstream_client(settings: &UpstreamSettings) -> awc::Client {
    let connector = awc::Connector::new()
        .timeout(settings.connect_timeout)
        .limit(0)
        .conn_keep_alive(std::time::Duration::from_secs(60));
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .no_default_headers()
        .timeout(settings.response_timeout)
        .finish()
}

async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Bytes, GatewayError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| GatewayError::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn upstream_host(url: &str) -> String {
    url.split_once("://")
        .map(|(scheme, rest)| {
            let authority = rest.split(['/', '?']).next().unwrap_or(rest);
            format!("{scheme}://{authority}")
        })
        .unwrap_or_else(|| url.to_owned())
}

fn send_error(error: SendRequestError, url: &str, settings: &UpstreamSettings) -> GatewayError {
    let upstream = upstream_host(url);
    match error {
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            GatewayError::Timeout {
                upstream,
                seconds: settings.response_timeout.as_secs(),
            }
        }
        SendRequestError::Url(e) => {
            GatewayError::BadRequest(format!("the upstream URL {url} is not valid: {e}"))
        }
        other => GatewayError::Unreachable {
            upstream,
            reason: other.to_string(),
        },
    }
}

pub async fn forward(
    req: &HttpRequest,
    payload: web::Payload,
    spec: &ProxySpec,
    state: &ProxyServerState,
    client: &awc::Client,
    in_flight: InFlight,
) -> Result<HttpResponse, GatewayError> {
    let provider = spec.provider.provider();
    let body = read_body(payload, state.upstream.max_request_bytes).await?;
    let query = Some(req.query_string()).filter(|q| !q.is_empty());
    let url = provider.upstream_url(
        spec,
        &state.provider_state,
        req.path(),
        query,
        req.headers(),
    )?;

    let mut headers = HeaderMap::new();
    for (name, value) in forwardable(req.headers()) {
        headers.append(name.clone(), value.clone());
    }
    let mut upstream = UpstreamRequest {
        method: req.method().clone(),
        url,
        headers,
        body,
    };
    provider
        .authorize(spec, &state.provider_state, &mut upstream)
        .await?;

    let mut request = client.request(upstream.method.clone(), upstream.url.as_str());
    for (name, value) in upstream.headers.iter() {
        request = request.append_header((name.clone(), value.clone()));
    }
    let response = request
        .send_body(upstream.body)
        .await
        .map_err(|e| send_error(e, &upstream.url, &state.upstream))?;

    let mut reply = HttpResponse::build(response.status());
    let tokens = connection_tokens(response.headers());
    for (name, value) in response.headers().iter() {
        if returnable(name, &tokens) {
            reply.append_header((name.clone(), value.clone()));
        }
    }
    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // The in-flight guard rides along with the body, so a streamed answer counts until its
    // last byte; dropping the stream (client gone) drops the upstream connection too.
    let body = response.map(move |chunk| {
        let _still_in_flight = &in_flight;
        chunk
    });
    Ok(match length {
        Some(length) => reply.body(SizedStream::new(length, body)),
        None => reply.streaming(body),
    })
}
